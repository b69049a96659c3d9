//! What `spool work` needs beyond claim/ack/nack (the operations are
//! `ops::work`), and commit durability.
