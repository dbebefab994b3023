//! The runtime's token: what keeps the outbox's own write paths to the runtime.
//!
//! A replicated model's table and the outbox tables may only be written under the
//! outbox's rules: a model write records its outbox row in the same transaction, and an
//! outbox row is deleted only after its receiver succeeded. The traits that carry those
//! writes ([`ModelWrites`](crate::ModelWrites), which the derives implement, and
//! [`OutboxConnection`](crate::OutboxConnection), which this crate implements per backend)
//! must be public so that they can be named in bounds; every one of their write methods
//! therefore takes a [`Token`], and only this crate can make one.

use std::marker::PhantomData;

/// Proof that the caller is diesel-outbox's runtime. It cannot be built outside the
/// crate, cloned, or kept past the call that received it (its lifetime is the call's), so
/// a method that takes one cannot be called by application code.
///
/// `For` names what the token is for: a model's own SQL takes a `Token<'_, Model>`, so
/// that even a hand-written `ModelWrites` impl, which receives a token when the runtime
/// calls it, cannot pass it on to another model's methods or the connection's.
#[derive(Debug)]
pub struct Token<'call, For: ?Sized = ()> {
    call: PhantomData<fn(&'call ()) -> &'call ()>,
    target: PhantomData<fn() -> *const For>,
}

impl<For: ?Sized> Token<'_, For> {
    /// A token for one call of the runtime.
    pub(crate) fn new() -> Self {
        Token {
            call: PhantomData,
            target: PhantomData,
        }
    }
}
