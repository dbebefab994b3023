//! Layer 1, keys and errors: the vocabulary every other layer speaks. Nothing here
//! imports from the rest of the crate.
//!
//! * [`category`]: scopes and categories, and the silos a category is carried on;
//! * [`declare`]: `outbox_scopes_and_categories!`, the application's declaration of them;
//! * [`shard`]: the two outbox tables, a shard, and a shard as the drain sees it;
//! * [`silo_id`]: a silo's database (control, or a named cell);
//! * [`error`]: the crate's error type, and what a failed delivery reports;
//! * [`clock`]: where "now" comes from;
//! * [`token`]: the proof that a caller is this crate's runtime.

pub(crate) mod category;
pub(crate) mod clock;
pub(crate) mod declare;
pub(crate) mod error;
pub(crate) mod shard;
pub(crate) mod silo_id;
pub(crate) mod token;
