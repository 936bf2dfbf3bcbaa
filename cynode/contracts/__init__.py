"""msgspec Structs that cross a module or host boundary. Versioned payloads; no behaviour here."""
