//! Content negotiation and body codecs (being written).
