//! What the derives' generated code needs besides re-exports: its version check, and the
//! expansion of a model's SQL once per backend this build enables.
//!
//! The derive wraps everything it generates in [`__outbox_derive!`](crate::__outbox_derive)
//! with its own version, so that a derive and a runtime of different releases fail with
//! one message that says so, instead of errors inside the expansion.

/// The derive's expansion, if the derive is this runtime's release; otherwise one error.
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_derive {
    ("0.1.0", $($tokens:tt)*) => { $($tokens)* };
    ($other:literal, $($tokens:tt)*) => {
        ::core::compile_error!(::core::concat!(
            "diesel-outbox-derive ", $other, " does not match diesel-outbox 0.1.0: ",
            "depend on `diesel-outbox` alone (it re-exports the derives), ",
            "or on both crates at the same version"
        ));
    };
}

/// Expands `$mac!(ConnectionType);` once per backend this build enables, with `$mysql`
/// for MySQL: its model SQL differs (no `DELETE ... RETURNING` on MySQL 8, and
/// `ON DUPLICATE KEY UPDATE` for the upsert).
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_for_each_connection {
    ($mac:ident, mysql: $mysql:ident) => {
        $crate::__outbox_if_sqlite! { $mac!($crate::__private_0_1_0::diesel::sqlite::SqliteConnection); }
        $crate::__outbox_if_postgres! { $mac!($crate::__private_0_1_0::diesel::pg::PgConnection); }
        $crate::__outbox_if_mysql! { $mysql!($crate::__private_0_1_0::diesel::mysql::MysqlConnection); }
    };
}

/// Expands `$mac!(AsyncConnectionType);` once per backend this build enables, if it has
/// the feature `async` (diesel-async's connections: the wrapper of `SqliteConnection`,
/// `AsyncPgConnection`, `$mysql` for `AsyncMysqlConnection` and `$sqlite` for the wrapper
/// of `SqliteConnection`); nothing otherwise.
#[cfg(feature = "async")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_for_each_async_connection {
    ($mac:ident, mysql: $mysql:ident, sqlite: $sqlite:ident) => {
        $crate::__outbox_if_sqlite! { $sqlite!($crate::__private_0_1_0::diesel_async::sync_connection_wrapper::SyncConnectionWrapper<$crate::__private_0_1_0::diesel::sqlite::SqliteConnection>); }
        $crate::__outbox_if_postgres! { $mac!($crate::__private_0_1_0::diesel_async::AsyncPgConnection); }
        $crate::__outbox_if_mysql! { $mysql!($crate::__private_0_1_0::diesel_async::AsyncMysqlConnection); }
    };
}

#[cfg(not(feature = "async"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_for_each_async_connection {
    ($mac:ident, mysql: $mysql:ident, sqlite: $sqlite:ident) => {};
}

/// Its tokens if this build has the feature `async` (the derives' `*_async` methods).
#[cfg(feature = "async")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_async {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "async"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_async {
    ($($tokens:tt)*) => {};
}

#[cfg(feature = "sqlite")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_sqlite {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "sqlite"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_sqlite {
    ($($tokens:tt)*) => {};
}

#[cfg(feature = "postgres")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_postgres {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "postgres"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_postgres {
    ($($tokens:tt)*) => {};
}

#[cfg(feature = "mysql")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_mysql {
    ($($tokens:tt)*) => { $($tokens)* };
}

#[cfg(not(feature = "mysql"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_if_mysql {
    ($($tokens:tt)*) => {};
}

#[cfg(test)]
mod tests {
    /// The release in `__outbox_derive!`'s first rule and in the hidden path's name must
    /// be this crate's version: a release that bumps one must bump all.
    #[test]
    fn the_version_check_names_this_release() {
        let source = include_str!("generated.rs");
        let version = env!("CARGO_PKG_VERSION");
        assert!(source.contains(&format!(
            "(\"{version}\", $($tokens:tt)*) => {{ $($tokens)* }};"
        )));
        assert!(source.contains(&format!("__private_{}::", version.replace('.', "_"))));
        let lib = include_str!("../lib.rs");
        assert!(lib.contains(&format!("pub mod __private_{};", version.replace('.', "_"))));
    }
}
