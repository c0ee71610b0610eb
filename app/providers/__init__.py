"""Provider adapters: one module per wire format, all speaking domain.Provider to the gateway."""
