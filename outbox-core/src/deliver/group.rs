//! Cutting a batch into groups a batch hook can take at once, without reordering any
//! shard.

use std::collections::HashMap;
use std::hash::Hash;

use crate::key::shard::ShardKey;

/// The indexes of `items` in groups of one kind (e.g. one model and replications only),
/// in the order they are to run, such that every shard's items keep their order: an
/// item's level is the number of times the kind changed before it in its shard, and the
/// groups run level by level, each level's in the order its kinds first appear. A batch
/// of one kind is one group.
pub(crate) fn groups<T, K>(
    items: &[T],
    shard: impl Fn(&T) -> ShardKey,
    kind: impl Fn(&T) -> K,
) -> Vec<Vec<usize>>
where
    K: Eq + Hash + Clone,
{
    let mut last: HashMap<ShardKey, (K, usize)> = HashMap::new();
    let mut order: Vec<(usize, K)> = Vec::new();
    let mut members: HashMap<(usize, K), Vec<usize>> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let item_kind = kind(item);
        let key = shard(item);
        let level = match last.get(&key) {
            None => 0,
            Some((before, level)) if *before == item_kind => *level,
            Some((_, level)) => level + 1,
        };
        last.insert(key, (item_kind.clone(), level));
        members
            .entry((level, item_kind.clone()))
            .or_insert_with(|| {
                order.push((level, item_kind));
                Vec::new()
            })
            .push(index);
    }
    // Stable: within a level, the order in which the kinds first appear.
    order.sort_by_key(|(level, _)| *level);
    order
        .into_iter()
        .filter_map(|key| members.remove(&key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::shard::Shard;

    fn shard(identifier: i64) -> ShardKey {
        ShardKey::Cell(Shard {
            scope: 0,
            identifier,
        })
    }

    #[test]
    fn one_kind_is_one_group_and_kinds_alternating_in_a_shard_keep_its_order() {
        let same = [(1, 'a'), (2, 'a'), (1, 'a')];
        assert_eq!(groups(&same, |i| shard(i.0), |i| i.1), vec![vec![0, 1, 2]]);
        // Shard 1: a, b, a; shard 2: b, a.
        let mixed = [(1, 'a'), (2, 'b'), (1, 'b'), (2, 'a'), (1, 'a')];
        assert_eq!(
            groups(&mixed, |i| shard(i.0), |i| i.1),
            vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
        );
    }
}
