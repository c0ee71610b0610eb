-- Exact costs: nano-USD integers (a REAL sum of many small costs drifts; integers sum exactly).
-- `cost_usd` stays for Gandalf compatibility and is written as cost_nano / 1e9. Rows stored
-- before this migration get their cost_nano from cost_usd, rounded to the nearest nano-USD.
-- `price_version` names the price table that priced the request ('' when unknown).

ALTER TABLE usage_records ADD COLUMN cost_nano INTEGER NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN price_version TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_rollups ADD COLUMN cost_nano INTEGER NOT NULL DEFAULT 0;

UPDATE usage_records SET cost_nano = CAST(round(cost_usd * 1e9) AS INTEGER) WHERE cost_usd != 0;
UPDATE usage_rollups SET cost_nano = CAST(round(cost_usd * 1e9) AS INTEGER) WHERE cost_usd != 0;
