//! Everything done with a result once a run has measured: the result document and its table
//! ([`report`]), reading documents back ([`doc`]), merging the documents of a distributed run
//! ([`merge`]), comparing two results ([`diff`]), drawing them ([`plot`]), and the receiver's
//! counts a run adds to its document ([`receiver`]). These modules only read the client's
//! types (`crate::client`); nothing in the client reaches back here, so a change to the
//! document's format never touches the load engines.

pub mod diff;
pub mod doc;
pub mod merge;
pub mod plot;
pub mod receiver;
pub mod report;
