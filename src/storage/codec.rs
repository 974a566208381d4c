//! Binary encoding of records (explicit little-endian, length-prefixed). STUB.
