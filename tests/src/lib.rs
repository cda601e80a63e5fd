//! Whole-system tests for facelock: train, export, boot facelockd, enroll, verify.
