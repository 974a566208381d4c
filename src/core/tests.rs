//! Transcript tests of the core, driven in-process with a fake clock.
