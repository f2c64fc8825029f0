//! echoload
