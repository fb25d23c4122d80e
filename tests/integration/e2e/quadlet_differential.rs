//! Quadlet differential test: filled by the quadlet work.
