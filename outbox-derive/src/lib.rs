//! Derive macros of [diesel-outbox](https://docs.rs/diesel-outbox). Use them through the
//! `diesel-outbox` crate, which re-exports them and documents them.
//!
//! Each derive runs three steps in one direction: `attr` parses the `#[outbox]` and
//! `#[diesel]` attributes, `valid` checks them into an `ast::Model` (collecting every
//! error with its span), and `expand` generates the code. The two entry points differ
//! only in the derive they ask for.

extern crate proc_macro;

mod ast;
mod attr;
mod ctxt;
mod expand;
mod mysql;
mod replicated_cell;
mod replicated_control;
#[cfg(test)]
mod snapshots;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `diesel_outbox::ReplicatedCell`: writes of the model only through an
/// `OutboxContext`, each recording a cell outbox row. The attributes are documented on
/// the `diesel_outbox::ReplicatedCell` trait.
#[proc_macro_derive(ReplicatedCell, attributes(outbox, diesel))]
pub fn derive_replicated_cell(input: TokenStream) -> TokenStream {
    replicated_cell::derive(&parse_macro_input!(input as DeriveInput)).into()
}

/// Derives `diesel_outbox::ReplicatedControl`: writes of the model only through an
/// `OutboxContext`, each recording one control outbox row per target cell. The attributes
/// are documented on the `diesel_outbox::ReplicatedControl` trait.
#[proc_macro_derive(ReplicatedControl, attributes(outbox, diesel))]
pub fn derive_replicated_control(input: TokenStream) -> TokenStream {
    replicated_control::derive(&parse_macro_input!(input as DeriveInput)).into()
}
