//! Replicated models as the guard protects them: every model the derives implement is a
//! [`ProtectedModels`] of its table.

use super::model::ModelIdentity;
use crate::backend::guard::ProtectedModels;

impl<M: ModelIdentity> ProtectedModels for M {
    fn table_names(out: &mut Vec<&'static str>) {
        out.push(M::TABLE);
    }
}
