//! Loading a batch's objects of one replicated model: one statement per chunk of ids
//! under the backend's bind limit, however many messages name them.

use crate::backend::OutboxConnection;
use crate::key::error::Result;
use crate::write::model::ModelWrites;

/// The objects of `M` among `object_identifiers` that exist, in no particular order;
/// each id is loaded once, however often it is listed.
pub(crate) fn load_models<C, M>(conn: &mut C, object_identifiers: &[i64]) -> Result<Vec<M>>
where
    C: OutboxConnection,
    M: ModelWrites<C>,
{
    let mut ids = object_identifiers.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(C::MAX_BIND_PARAMS.max(1)) {
        found.extend(M::load_rows(conn, chunk)?);
    }
    Ok(found)
}
