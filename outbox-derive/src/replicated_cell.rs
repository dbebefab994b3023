//! `#[derive(ReplicatedCell)]`.

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::ast::Derive;
use crate::{expand, valid};

pub fn derive(input: &DeriveInput) -> TokenStream {
    expand_or_errors(input, Derive::Cell)
}

/// Shared by both derives: the expansion, or the errors plus stub methods.
pub fn expand_or_errors(input: &DeriveInput, derive: Derive) -> TokenStream {
    match valid::model(input, derive) {
        Ok(model) => expand::model(&model),
        Err(errors) => {
            let mut tokens = errors.to_compile_error();
            if matches!(&input.data, syn::Data::Struct(_)) && input.generics.params.is_empty() {
                tokens.extend(expand::stubs(&input.ident));
            }
            tokens
        }
    }
}
