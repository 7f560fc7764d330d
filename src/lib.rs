//! connectx: preload library (skeleton)
