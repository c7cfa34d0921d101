//! Unit tests for request decoding, validation and replies.
