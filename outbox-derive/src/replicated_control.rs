//! `#[derive(ReplicatedControl)]`.

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::ast::Derive;
use crate::replicated_cell::expand_or_errors;

pub fn derive(input: &DeriveInput) -> TokenStream {
    expand_or_errors(input, Derive::Control)
}
