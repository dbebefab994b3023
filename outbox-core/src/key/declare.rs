//! `outbox_scopes_and_categories!`: the application's declaration of its scopes and
//! categories.

/// Declares an application's scopes and categories.
///
/// Each scope and each category becomes a unit struct inside a module of the name you
/// give, so `Category::UserUpdate` is both a type (checked by the compiler) and a value
/// (passed to [`CellOutbox::new`](crate::CellOutbox::new) and friends).
///
/// * A **scope** has a stable number and says where a model's shard identifier comes
///   from: `shard: some_field` (the model field of that name) or `shard: 0` (a fixed
///   value, for scopes with a single shard). A model may override it with
///   `#[outbox(shard)]` on a field.
/// * A **category** has a stable number, its scope, and the silo whose outbox carries
///   it: `cell`, `control` or `both`.
///
/// What does not compile: two scopes or two categories with the same number (`E0081`,
/// pointing at both), a category without `scope:` or `silo:`, a scope that is not
/// declared, a silo other than `cell`, `control` or `both`.
///
/// Declare it at module level (not inside a function): the category module refers to the
/// scope module as its sibling.
///
/// ```
/// diesel_outbox::outbox_scopes_and_categories! {
///     /// How rows are sharded.
///     pub scopes Scope {
///         /// Everything about one organization; shards by organization id.
///         Organization = 0 { shard: organization_id },
///         /// Everything about one user; shards by user id.
///         User = 1 { shard: user_id },
///     }
///     /// What rows are about.
///     pub categories Category {
///         OrganizationUpdate = 1 { scope: Organization, silo: cell },
///         UserUpdate = 2 { scope: User, silo: control },
///         AuditLogEvent = 3 { scope: Organization, silo: both },
///     }
/// }
///
/// fn main() {
///     use diesel_outbox::category::{OutboxCategory, OutboxScope};
///     assert_eq!(<Category::UserUpdate as OutboxCategory>::NUMBER, 2);
///     assert_eq!(<Scope::User as OutboxScope>::NAME, "User");
///     assert_eq!(Category::ALL.len(), 3);
///     assert_eq!(Category::info(3).map(|c| c.name), Some("AuditLogEvent"));
/// }
/// ```
///
/// A duplicate number is rejected by the compiler:
///
/// ```compile_fail,E0081
/// diesel_outbox::outbox_scopes_and_categories! {
///     pub scopes Scope { Organization = 0 { shard: organization_id } }
///     pub categories Category {
///         OrganizationUpdate = 1 { scope: Organization, silo: cell },
///         ProjectUpdate = 1 { scope: Organization, silo: cell },
///     }
/// }
/// # fn main() {}
/// ```
///
/// So is a category without a scope:
///
/// ```compile_fail
/// diesel_outbox::outbox_scopes_and_categories! {
///     pub scopes Scope { Organization = 0 { shard: organization_id } }
///     pub categories Category { OrganizationUpdate = 1 { silo: cell } }
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! outbox_scopes_and_categories {
    (
        $(#[$scopes_meta:meta])*
        $scopes_vis:vis scopes $Scopes:ident {
            $(
                $(#[$scope_meta:meta])*
                $scope:ident = $scope_number:literal { shard: $($shard:tt)+ }
            ),* $(,)?
        }
        $(#[$categories_meta:meta])*
        $categories_vis:vis categories $Categories:ident {
            $(
                $(#[$category_meta:meta])*
                $category:ident = $category_number:literal {
                    scope: $category_scope:ident, silo: $silo:ident $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$scopes_meta])*
        #[allow(non_snake_case)]
        $scopes_vis mod $Scopes {
            $(
                $(#[$scope_meta])*
                #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
                pub struct $scope;

                impl $crate::category::OutboxScope for $scope {
                    const NUMBER: i32 = $scope_number;
                    const NAME: &'static str = stringify!($scope);
                }

                $crate::__outbox_scope_shard!($scope, $($shard)+);
            )*

            /// Every declared scope.
            pub const ALL: &[$crate::category::ScopeInfo] = &[$(
                $crate::category::ScopeInfo { number: $scope_number, name: stringify!($scope) }
            ),*];

            /// The scope stored as `number`, if it is declared.
            pub fn info(number: i32) -> ::core::option::Option<$crate::category::ScopeInfo> {
                ALL.iter().find(|scope| scope.number == number).copied()
            }

            // Rust rejects two equal discriminants (E0081): this is the duplicate check.
            #[allow(dead_code, non_camel_case_types, clippy::enum_variant_names)]
            #[repr(i32)]
            enum __OutboxScopeNumbersMustBeUnique { $($scope = $scope_number),* }
        }

        $(#[$categories_meta])*
        #[allow(non_snake_case)]
        $categories_vis mod $Categories {
            $(
                $(#[$category_meta])*
                #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
                pub struct $category;

                impl $crate::category::OutboxCategory for $category {
                    const NUMBER: i32 = $category_number;
                    const NAME: &'static str = stringify!($category);
                    type Scope = super::$Scopes::$category_scope;
                    const SILOS: $crate::category::Silos = $crate::__outbox_silo!($silo);
                }

                $crate::__outbox_silo_impls!($category, $silo);
            )*

            /// Every declared category.
            pub const ALL: &[$crate::category::CategoryInfo] = &[$(
                $crate::category::CategoryInfo {
                    number: $category_number,
                    name: stringify!($category),
                    scope: $crate::category::ScopeInfo {
                        number: <super::$Scopes::$category_scope as $crate::category::OutboxScope>::NUMBER,
                        name: <super::$Scopes::$category_scope as $crate::category::OutboxScope>::NAME,
                    },
                    silos: $crate::__outbox_silo!($silo),
                }
            ),*];

            /// The category stored as `number`, if it is declared.
            pub fn info(number: i32) -> ::core::option::Option<$crate::category::CategoryInfo> {
                ALL.iter().find(|category| category.number == number).copied()
            }

            // Rust rejects two equal discriminants (E0081): this is the duplicate check.
            #[allow(dead_code, non_camel_case_types, clippy::enum_variant_names)]
            #[repr(i32)]
            enum __OutboxCategoryNumbersMustBeUnique { $($category = $category_number),* }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_scope_shard {
    ($scope:ident, $value:literal) => {
        impl<M: ?Sized> $crate::category::ShardOf<M> for $scope {
            fn shard_of(_model: &M) -> i64 {
                $value
            }
        }
    };
    ($scope:ident, $field:ident) => {
        impl<M> $crate::category::ShardOf<M> for $scope
        where
            M: $crate::category::NamedField<{ $crate::category::field_id(stringify!($field)) }>,
            <M as $crate::category::NamedField<
                { $crate::category::field_id(stringify!($field)) },
            >>::Value: $crate::category::Identifier,
        {
            fn shard_of(model: &M) -> i64 {
                $crate::category::Identifier::to_identifier(<M as $crate::category::NamedField<
                    { $crate::category::field_id(stringify!($field)) },
                >>::field(model))
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_silo {
    (cell) => {
        $crate::category::Silos::Cell
    };
    (control) => {
        $crate::category::Silos::Control
    };
    (both) => {
        $crate::category::Silos::Both
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_silo_impls {
    ($category:ident, cell) => {
        impl $crate::category::CellCategory for $category {}
    };
    ($category:ident, control) => {
        impl $crate::category::ControlCategory for $category {}
    };
    ($category:ident, both) => {
        impl $crate::category::CellCategory for $category {}
        impl $crate::category::ControlCategory for $category {}
    };
}
