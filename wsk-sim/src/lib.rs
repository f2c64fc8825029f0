//! wsk-sim
