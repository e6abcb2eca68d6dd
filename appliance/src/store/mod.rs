//! Flash-safe A/B configuration store (postcard + CRC-32 records).
