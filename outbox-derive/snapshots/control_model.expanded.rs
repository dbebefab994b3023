#[derive(Queryable, Selectable, ReplicatedControl)]
#[diesel(table_name = users)]
#[outbox(category = Category::UserUpdate, cells = User::cells, payload)]
pub struct User {
    #[outbox(shard)]
    pub id: i64,
    pub name: String,
}

// ::diesel_outbox::__outbox_derive! { "0.1.0", ... } wraps:

#[doc(hidden)]
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    unused_attributes,
    unused_qualifications,
    unused_extern_crates,
    missing_docs,
    unreachable_pub,
    clippy::absolute_paths,
    clippy::used_underscore_binding,
    clippy::needless_lifetimes,
    clippy::missing_docs_in_private_items
)]
const _: () = {
    use ::diesel_outbox::__private_0_1_0 as __outbox;
    #[derive(__outbox::diesel::Insertable, __outbox::diesel::AsChangeset)]
    #[diesel(
        table_name = users,
        primary_key(id),
        treat_none_as_default_value = false,
        treat_none_as_null = true
    )]
    #[doc(hidden)]
    pub struct __OutboxRow<'__outbox> {
        #[diesel(column_name = id, skip_update)]
        id: &'__outbox i64,
        #[diesel(column_name = name)]
        name: &'__outbox String,
    }
    #[automatically_derived]
    impl<'__outbox> __OutboxRow<'__outbox> {
        fn of(model: &'__outbox User) -> Self {
            __OutboxRow {
                id: &model.id,
                name: &model.name,
            }
        }
    }
    #[automatically_derived]
    impl __outbox::ReplicatedControl for User {
        type Category = Category::UserUpdate;
        const TABLE_NAME: &'static str = "users";
        const FLUSH: bool = true;
        const REPLICATION_VERSION: i32 = 1i32;
        fn object_identifier(&self) -> i64 {
            __outbox::Identifier::to_identifier(&self.id)
        }
        fn shard_identifier(&self) -> i64 {
            __outbox::Identifier::to_identifier(&self.id)
        }
        fn outbox_payload(
            &self,
        ) -> __outbox::Result<::core::option::Option<__outbox::JsonPayload>> {
            __outbox::JsonPayload::encode(self).map(::core::option::Option::Some)
        }
        fn target_cells(&self) -> ::std::vec::Vec<::std::string::String> {
            __outbox::CellNames::cell_names(&User::cells(self))
        }
    }
    #[automatically_derived]
    impl __outbox::OutboxRows for User {
        fn outbox_rows_into(
            &self,
            out: &mut ::std::vec::Vec<__outbox::OutboxWrite>,
        ) -> __outbox::Result<()> {
            __outbox::control_rows_into(self, out)
        }
    }
    #[automatically_derived]
    impl __outbox::ModelIdentity for User {
        const TABLE: &'static str = "users";
        fn identity(&self) -> i64 {
            __outbox::Identifier::to_identifier(&self.id)
        }
    }
    #[automatically_derived]
    impl __outbox::NamedField<{ __outbox::field_id("id") }> for User {
        type Value = i64;
        fn field(&self) -> &i64 {
            &self.id
        }
    }
    #[automatically_derived]
    impl __outbox::NamedField<{ __outbox::field_id("name") }> for User {
        type Value = String;
        fn field(&self) -> &String {
            &self.name
        }
    }
    const _: fn() = || {
        trait ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<Marker> {
            fn check() {}
        }
        #[automatically_derived]
        impl<
            T: ?Sized,
        > ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<()> for T {}
        struct ImplementsInsertable;
        #[automatically_derived]
        impl<
            T: ?Sized + __outbox::diesel::Insertable<users::table>,
        > ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<
            ImplementsInsertable,
        > for T {}
        trait ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<Marker> {
            fn check() {}
        }
        #[automatically_derived]
        impl<
            T: ?Sized,
        > ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<()> for T {}
        struct ImplementsAsChangeset;
        #[automatically_derived]
        impl<
            T: ?Sized + __outbox::diesel::AsChangeset,
        > ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<
            ImplementsAsChangeset,
        > for T {}
        fn every_form<'__outbox>() {
            let _ = <User as ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<
                _,
            >>::check;
            let _ = <User as ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<
                _,
            >>::check;
            let _ = <&'__outbox User as ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<
                _,
            >>::check;
            let _ = <&'__outbox User as ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<
                _,
            >>::check;
            let _ = <&'__outbox mut User as ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<
                _,
            >>::check;
            let _ = <&'__outbox mut User as ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<
                _,
            >>::check;
            let _ = <::std::boxed::Box<
                User,
            > as ReplicatedModelsAreInsertedInAnOutboxContextNotThroughInsertable<
                _,
            >>::check;
            let _ = <::std::boxed::Box<
                User,
            > as ReplicatedModelsAreUpdatedInAnOutboxContextNotThroughAsChangeset<
                _,
            >>::check;
        }
    };
    #[automatically_derived]
    impl __outbox::diesel::associations::HasTable for User {
        type Table = __outbox::ReplicatedTable<users::table>;
        fn table() -> Self::Table {
            __outbox::ReplicatedTable::new(users::table)
        }
    }
    #[automatically_derived]
    impl<'__outbox> __outbox::diesel::associations::Identifiable for &'__outbox User {
        type Id = &'__outbox i64;
        fn id(self) -> Self::Id {
            &self.id
        }
    }
    #[automatically_derived]
    impl<'__outbox, '__outbox_ref> __outbox::diesel::associations::Identifiable
    for &'__outbox_ref &'__outbox User {
        type Id = &'__outbox i64;
        fn id(self) -> Self::Id {
            &self.id
        }
    }
    #[allow(unused_macros)]
    macro_rules! __outbox_model_writes {
        ($conn:ty) => {
            #[automatically_derived] impl __outbox::ModelWrites < $conn > for User {
            const COLUMNS : usize = 2usize; fn insert_rows(conn : & mut $conn, models : &
            [Self], _token : __outbox::Token < '_, Self >) -> __outbox::Result < () > {
            if let [model] = models { let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), & mut * conn) ?; return
            ::core::result::Result::Ok(()); } let rows : ::std::vec::Vec < _ > = models
            .iter().map(__OutboxRow::of).collect(); let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(rows), & mut * conn) ?; ::core::result::Result::Ok(()) } fn
            update_row(conn : & mut $conn, model : & Self, _token : __outbox::Token < '_,
            Self >) -> __outbox::Result < usize > { let target =
            __outbox::diesel::QueryDsl::find(users::table, & model.id);
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::execute(__outbox::diesel::update(target)
            .set(__OutboxRow::of(model)), & mut * conn) ?) } fn upsert_rows(conn : & mut
            $conn, models : & [Self], _token : __outbox::Token < '_, Self >) ->
            __outbox::Result < () > { use __outbox::diesel::ExpressionMethods as _; if
            let [model] = models { let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)).on_conflict(users::id).do_update()
            .set((users::name.eq(__outbox::diesel::upsert::excluded(users::name)),)), &
            mut * conn) ?; return ::core::result::Result::Ok(()); } let rows :
            ::std::vec::Vec < _ > = models.iter().map(__OutboxRow::of).collect(); let _ :
            usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(rows).on_conflict(users::id).do_update().set((users::name
            .eq(__outbox::diesel::upsert::excluded(users::name)),)), & mut * conn) ?;
            ::core::result::Result::Ok(()) } fn delete_rows(conn : & mut $conn, ids : &
            [i64], _token : __outbox::Token < '_, Self >) -> __outbox::Result <
            ::std::vec::Vec < Self >> { use __outbox::diesel::ExpressionMethods as _; let
            keys = ids.iter().map(| id | __outbox::primary_key:: < i64 > ("users", * id))
            .collect:: < __outbox::Result < ::std::vec::Vec < _ >> > () ?; let target =
            __outbox::diesel::QueryDsl::filter(users::table, users::id.eq_any(keys));
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::get_results(__outbox::diesel::delete(target)
            .returning(< Self as __outbox::diesel::SelectableHelper < < $conn as
            __outbox::diesel::Connection > ::Backend >> ::as_returning(),), & mut * conn)
            ?) } fn load_row(conn : & mut $conn, id : i64) -> __outbox::Result <
            ::core::option::Option < Self >> { let key = __outbox::primary_key:: < i64 >
            ("users", id) ?; let query =
            __outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::find(users::table,
            key), < Self as __outbox::diesel::SelectableHelper < < $conn as
            __outbox::diesel::Connection > ::Backend >> ::as_select(),);
            ::core::result::Result::Ok(__outbox::diesel::OptionalExtension::optional(__outbox::diesel::RunQueryDsl::first(query,
            conn),) ?) } fn load_rows(conn : & mut $conn, ids : & [i64]) ->
            __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let keys = ids.iter().map(| id |
            __outbox::primary_key:: < i64 > ("users", * id)).collect:: < __outbox::Result
            < ::std::vec::Vec < _ >> > () ?; let query =
            __outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::filter(users::table,
            users::id.eq_any(keys)), < Self as __outbox::diesel::SelectableHelper < <
            $conn as __outbox::diesel::Connection > ::Backend >> ::as_select(),);
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::load(query, conn)
            ?) } fn load_page(conn : & mut $conn, after : ::core::option::Option < i64 >,
            limit : i64) -> __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let page = match after {
            ::core::option::Option::None =>
            __outbox::diesel::RunQueryDsl::load(__outbox::diesel::QueryDsl::limit(__outbox::diesel::QueryDsl::order(__outbox::diesel::QueryDsl::select(users::table,
            < Self as __outbox::diesel::SelectableHelper << $conn as
            __outbox::diesel::Connection > ::Backend >> ::as_select()), users::id
            .asc(),), limit,), conn,) ?, ::core::option::Option::Some(after) => { let
            after = __outbox::primary_key:: < i64 > ("users", after) ?;
            __outbox::diesel::RunQueryDsl::load(__outbox::diesel::QueryDsl::limit(__outbox::diesel::QueryDsl::order(__outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::filter(users::table,
            users::id.gt(after)), < Self as __outbox::diesel::SelectableHelper << $conn
            as __outbox::diesel::Connection > ::Backend >> ::as_select(),), users::id
            .asc(),), limit,), conn,) ? } }; ::core::result::Result::Ok(page) } fn
            count_rows(conn : & mut $conn) -> __outbox::Result < i64 > {
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::get_result(__outbox::diesel::QueryDsl::count(users::table),
            conn,) ?) } }
        };
    }
    #[allow(unused_macros)]
    macro_rules! __outbox_model_writes_mysql {
        ($conn:ty) => {
            #[automatically_derived] impl __outbox::ModelWrites < $conn > for User {
            const COLUMNS : usize = 2usize; fn insert_rows(conn : & mut $conn, models : &
            [Self], _token : __outbox::Token < '_, Self >) -> __outbox::Result < () > {
            if let [model] = models { let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), & mut * conn) ?; return
            ::core::result::Result::Ok(()); } let rows : ::std::vec::Vec < _ > = models
            .iter().map(__OutboxRow::of).collect(); let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(rows), & mut * conn) ?; ::core::result::Result::Ok(()) } fn
            update_row(conn : & mut $conn, model : & Self, _token : __outbox::Token < '_,
            Self >) -> __outbox::Result < usize > { let target =
            __outbox::diesel::QueryDsl::find(users::table, & model.id);
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::execute(__outbox::diesel::update(target)
            .set(__OutboxRow::of(model)), & mut * conn) ?) } fn upsert_rows(conn : & mut
            $conn, models : & [Self], _token : __outbox::Token < '_, Self >) ->
            __outbox::Result < () > { const UPDATED : & [& str] = & [< users::name as
            __outbox::diesel::Column > ::NAME]; if let [model] = models { let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::mysql_upsert(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), UPDATED, < users::id as
            __outbox::diesel::Column > ::NAME,), & mut * conn) ?; return
            ::core::result::Result::Ok(()); } let rows : ::std::vec::Vec < _ > = models
            .iter().map(__OutboxRow::of).collect(); let _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::mysql_upsert(__outbox::diesel::insert_into(users::table)
            .values(rows), UPDATED, < users::id as __outbox::diesel::Column > ::NAME,), &
            mut * conn) ?; ::core::result::Result::Ok(()) } fn delete_rows(conn : & mut
            $conn, ids : & [i64], _token : __outbox::Token < '_, Self >) ->
            __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let keys = ids.iter().map(| id |
            __outbox::primary_key:: < i64 > ("users", * id)).collect:: < __outbox::Result
            < ::std::vec::Vec < _ >> > () ?; let query =
            __outbox::diesel::QueryDsl::for_update(__outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::filter(users::table,
            users::id.eq_any(keys)), < Self as __outbox::diesel::SelectableHelper < <
            $conn as __outbox::diesel::Connection > ::Backend >> ::as_select(),)); let
            found : ::std::vec::Vec < Self > = __outbox::diesel::RunQueryDsl::load(query,
            & mut * conn) ?; if found.is_empty() { return
            ::core::result::Result::Ok(found); } let keys = found.iter().map(| model |
            __outbox::primary_key:: < i64 > ("users",
            __outbox::Identifier::to_identifier(& model.id),)).collect:: <
            __outbox::Result < ::std::vec::Vec < _ >> > () ?; let target =
            __outbox::diesel::QueryDsl::filter(users::table, users::id.eq_any(keys)); let
            _ : usize =
            __outbox::diesel::RunQueryDsl::execute(__outbox::diesel::delete(target), &
            mut * conn) ?; ::core::result::Result::Ok(found) } fn load_row(conn : & mut
            $conn, id : i64) -> __outbox::Result < ::core::option::Option < Self >> { let
            key = __outbox::primary_key:: < i64 > ("users", id) ?; let query =
            __outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::find(users::table,
            key), < Self as __outbox::diesel::SelectableHelper < < $conn as
            __outbox::diesel::Connection > ::Backend >> ::as_select(),);
            ::core::result::Result::Ok(__outbox::diesel::OptionalExtension::optional(__outbox::diesel::RunQueryDsl::first(query,
            conn),) ?) } fn load_rows(conn : & mut $conn, ids : & [i64]) ->
            __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let keys = ids.iter().map(| id |
            __outbox::primary_key:: < i64 > ("users", * id)).collect:: < __outbox::Result
            < ::std::vec::Vec < _ >> > () ?; let query =
            __outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::filter(users::table,
            users::id.eq_any(keys)), < Self as __outbox::diesel::SelectableHelper < <
            $conn as __outbox::diesel::Connection > ::Backend >> ::as_select(),);
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::load(query, conn)
            ?) } fn load_page(conn : & mut $conn, after : ::core::option::Option < i64 >,
            limit : i64) -> __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let page = match after {
            ::core::option::Option::None =>
            __outbox::diesel::RunQueryDsl::load(__outbox::diesel::QueryDsl::limit(__outbox::diesel::QueryDsl::order(__outbox::diesel::QueryDsl::select(users::table,
            < Self as __outbox::diesel::SelectableHelper << $conn as
            __outbox::diesel::Connection > ::Backend >> ::as_select()), users::id
            .asc(),), limit,), conn,) ?, ::core::option::Option::Some(after) => { let
            after = __outbox::primary_key:: < i64 > ("users", after) ?;
            __outbox::diesel::RunQueryDsl::load(__outbox::diesel::QueryDsl::limit(__outbox::diesel::QueryDsl::order(__outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::filter(users::table,
            users::id.gt(after)), < Self as __outbox::diesel::SelectableHelper << $conn
            as __outbox::diesel::Connection > ::Backend >> ::as_select(),), users::id
            .asc(),), limit,), conn,) ? } }; ::core::result::Result::Ok(page) } fn
            count_rows(conn : & mut $conn) -> __outbox::Result < i64 > {
            ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::get_result(__outbox::diesel::QueryDsl::count(users::table),
            conn,) ?) } }
        };
    }
    #[allow(unused_macros)]
    macro_rules! __outbox_model_writes_async {
        ($conn:ty) => {
            #[automatically_derived] impl __outbox::AsyncModelWrites < $conn > for User {
            const COLUMNS : usize = 2usize; async fn insert_rows(conn : & mut $conn,
            models : & [Self], _token : __outbox::Token < '_, Self >) -> __outbox::Result
            < () > { if let [model] = models { let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), & mut * conn). await ?; return
            ::core::result::Result::Ok(()); } let rows : ::std::vec::Vec < _ > = models
            .iter().map(__OutboxRow::of).collect(); let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(rows), & mut * conn). await ?; ::core::result::Result::Ok(()) } async
            fn update_row(conn : & mut $conn, model : & Self, _token : __outbox::Token <
            '_, Self >) -> __outbox::Result < usize > { let target =
            __outbox::diesel::QueryDsl::find(users::table, & model.id);
            ::core::result::Result::Ok(__outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::update(target)
            .set(__OutboxRow::of(model)), & mut * conn). await ?) } async fn
            upsert_rows(conn : & mut $conn, models : & [Self], _token : __outbox::Token <
            '_, Self >) -> __outbox::Result < () > { use
            __outbox::diesel::ExpressionMethods as _; if let [model] = models { let _ :
            usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)).on_conflict(users::id).do_update()
            .set((users::name.eq(__outbox::diesel::upsert::excluded(users::name)),)), &
            mut * conn). await ?; return ::core::result::Result::Ok(()); } let rows :
            ::std::vec::Vec < _ > = models.iter().map(__OutboxRow::of).collect(); let _ :
            usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(rows).on_conflict(users::id).do_update().set((users::name
            .eq(__outbox::diesel::upsert::excluded(users::name)),)), & mut * conn). await
            ?; ::core::result::Result::Ok(()) } async fn delete_rows(conn : & mut $conn,
            ids : & [i64], _token : __outbox::Token < '_, Self >) -> __outbox::Result <
            ::std::vec::Vec < Self >> { use __outbox::diesel::ExpressionMethods as _; let
            keys = ids.iter().map(| id | __outbox::primary_key:: < i64 > ("users", * id))
            .collect:: < __outbox::Result < ::std::vec::Vec < _ >> > () ?; let target =
            __outbox::diesel::QueryDsl::filter(users::table, users::id.eq_any(keys));
            ::core::result::Result::Ok(__outbox::diesel_async::RunQueryDsl::get_results(__outbox::diesel::delete(target)
            .returning(< Self as __outbox::diesel::SelectableHelper < < $conn as
            __outbox::diesel_async::AsyncConnectionCore > ::Backend >>
            ::as_returning(),), & mut * conn). await ?) } }
        };
    }
    #[allow(unused_macros)]
    macro_rules! __outbox_model_writes_async_mysql {
        ($conn:ty) => {
            #[automatically_derived] impl __outbox::AsyncModelWrites < $conn > for User {
            const COLUMNS : usize = 2usize; async fn insert_rows(conn : & mut $conn,
            models : & [Self], _token : __outbox::Token < '_, Self >) -> __outbox::Result
            < () > { if let [model] = models { let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), & mut * conn). await ?; return
            ::core::result::Result::Ok(()); } let rows : ::std::vec::Vec < _ > = models
            .iter().map(__OutboxRow::of).collect(); let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(rows), & mut * conn). await ?; ::core::result::Result::Ok(()) } async
            fn update_row(conn : & mut $conn, model : & Self, _token : __outbox::Token <
            '_, Self >) -> __outbox::Result < usize > { let target =
            __outbox::diesel::QueryDsl::find(users::table, & model.id);
            ::core::result::Result::Ok(__outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::update(target)
            .set(__OutboxRow::of(model)), & mut * conn). await ?) } async fn
            upsert_rows(conn : & mut $conn, models : & [Self], _token : __outbox::Token <
            '_, Self >) -> __outbox::Result < () > { const UPDATED : & [& str] = & [<
            users::name as __outbox::diesel::Column > ::NAME]; if let [model] = models {
            let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::mysql_upsert(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), UPDATED, < users::id as
            __outbox::diesel::Column > ::NAME,), & mut * conn). await ?; return
            ::core::result::Result::Ok(()); } let rows : ::std::vec::Vec < _ > = models
            .iter().map(__OutboxRow::of).collect(); let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::mysql_upsert(__outbox::diesel::insert_into(users::table)
            .values(rows), UPDATED, < users::id as __outbox::diesel::Column > ::NAME,), &
            mut * conn). await ?; ::core::result::Result::Ok(()) } async fn
            delete_rows(conn : & mut $conn, ids : & [i64], _token : __outbox::Token < '_,
            Self >) -> __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let keys = ids.iter().map(| id |
            __outbox::primary_key:: < i64 > ("users", * id)).collect:: < __outbox::Result
            < ::std::vec::Vec < _ >> > () ?; let query =
            __outbox::diesel::QueryDsl::for_update(__outbox::diesel::QueryDsl::select(__outbox::diesel::QueryDsl::filter(users::table,
            users::id.eq_any(keys)), < Self as __outbox::diesel::SelectableHelper < <
            $conn as __outbox::diesel_async::AsyncConnectionCore > ::Backend >>
            ::as_select(),)); let found : ::std::vec::Vec < Self > =
            __outbox::diesel_async::RunQueryDsl::load(query, & mut * conn). await ?; if
            found.is_empty() { return ::core::result::Result::Ok(found); } let keys =
            found.iter().map(| model | __outbox::primary_key:: < i64 > ("users",
            __outbox::Identifier::to_identifier(& model.id),)).collect:: <
            __outbox::Result < ::std::vec::Vec < _ >> > () ?; let target =
            __outbox::diesel::QueryDsl::filter(users::table, users::id.eq_any(keys)); let
            _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::delete(target),
            & mut * conn). await ?; ::core::result::Result::Ok(found) } }
        };
    }
    #[allow(unused_macros)]
    macro_rules! __outbox_model_writes_async_sqlite {
        ($conn:ty) => {
            #[automatically_derived] impl __outbox::AsyncModelWrites < $conn > for User {
            const COLUMNS : usize = 2usize; async fn insert_rows(conn : & mut $conn,
            models : & [Self], _token : __outbox::Token < '_, Self >) -> __outbox::Result
            < () > { for model in models { let _ : usize =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)), & mut * conn). await ?; }
            ::core::result::Result::Ok(()) } async fn update_row(conn : & mut $conn,
            model : & Self, _token : __outbox::Token < '_, Self >) -> __outbox::Result <
            usize > { let target = __outbox::diesel::QueryDsl::find(users::table, & model
            .id);
            ::core::result::Result::Ok(__outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::update(target)
            .set(__OutboxRow::of(model)), & mut * conn). await ?) } async fn
            upsert_rows(conn : & mut $conn, models : & [Self], _token : __outbox::Token <
            '_, Self >) -> __outbox::Result < () > { use
            __outbox::diesel::ExpressionMethods as _; for model in models { let _ : usize
            =
            __outbox::diesel_async::RunQueryDsl::execute(__outbox::diesel::insert_into(users::table)
            .values(__OutboxRow::of(model)).on_conflict(users::id).do_update()
            .set((users::name.eq(__outbox::diesel::upsert::excluded(users::name)),)), &
            mut * conn). await ?; } ::core::result::Result::Ok(()) } async fn
            delete_rows(conn : & mut $conn, ids : & [i64], _token : __outbox::Token < '_,
            Self >) -> __outbox::Result < ::std::vec::Vec < Self >> { use
            __outbox::diesel::ExpressionMethods as _; let keys = ids.iter().map(| id |
            __outbox::primary_key:: < i64 > ("users", * id)).collect:: < __outbox::Result
            < ::std::vec::Vec < _ >> > () ?; let target =
            __outbox::diesel::QueryDsl::filter(users::table, users::id.eq_any(keys));
            ::core::result::Result::Ok(__outbox::diesel_async::RunQueryDsl::get_results(__outbox::diesel::delete(target)
            .returning(< Self as __outbox::diesel::SelectableHelper < < $conn as
            __outbox::diesel_async::AsyncConnectionCore > ::Backend >>
            ::as_returning(),), & mut * conn). await ?) } }
        };
    }
    ::diesel_outbox::__outbox_for_each_connection!(
        __outbox_model_writes, mysql : __outbox_model_writes_mysql
    );
    ::diesel_outbox::__outbox_for_each_async_connection!(
        __outbox_model_writes_async, mysql : __outbox_model_writes_async_mysql, sqlite :
        __outbox_model_writes_async_sqlite
    );
    #[automatically_derived]
    impl User {
        ///Inserts this model and records one control outbox row per target cell, in `ctx`'s transaction.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn insert<C>(
            &self,
            ctx: &mut __outbox::OutboxContext<'_, C>,
        ) -> __outbox::Result<()>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
        {
            __outbox::insert(ctx, ::core::slice::from_ref(self))
        }
        ///Updates this model's row (by primary key) and records one control outbox row per target cell. Fails with `Error::ModelNotFound` if the row does not exist.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn update<C>(
            &self,
            ctx: &mut __outbox::OutboxContext<'_, C>,
        ) -> __outbox::Result<()>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
            Self: __outbox::ModelIdentity,
        {
            __outbox::update(ctx, ::core::slice::from_ref(self))
        }
        ///Inserts this model or, if its primary key exists, updates it (one upsert), and records one control outbox row per target cell.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn save<C>(
            &self,
            ctx: &mut __outbox::OutboxContext<'_, C>,
        ) -> __outbox::Result<()>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
        {
            __outbox::save(ctx, ::core::slice::from_ref(self))
        }
        ///Deletes this model's row and records one control outbox row per target cell, as the row was. Returns whether it existed.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn delete<C>(
            &self,
            ctx: &mut __outbox::OutboxContext<'_, C>,
        ) -> __outbox::Result<bool>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
            Self: __outbox::ModelIdentity,
        {
            let id = <Self as __outbox::ModelIdentity>::identity(self);
            __outbox::delete::<C, Self>(ctx, &[id]).map(|deleted| deleted > 0)
        }
        ///Deletes the object with this identifier, if it exists, and records its outbox rows. Returns whether it existed.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn delete_by_id<C>(
            ctx: &mut __outbox::OutboxContext<'_, C>,
            id: impl __outbox::Identifier,
        ) -> __outbox::Result<bool>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
        {
            let id = __outbox::Identifier::to_identifier(&id);
            __outbox::delete::<C, Self>(ctx, &[id]).map(|deleted| deleted > 0)
        }
        ///Inserts all `models` with one INSERT (split only at the backend's bind-parameter limit) and records their outbox rows.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn insert_all<C>(
            ctx: &mut __outbox::OutboxContext<'_, C>,
            models: &[Self],
        ) -> __outbox::Result<()>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
        {
            __outbox::insert(ctx, models)
        }
        ///Updates every model's row by primary key (one UPDATE each: SQL has no portable multi-row UPDATE) and records their outbox rows.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn update_all<C>(
            ctx: &mut __outbox::OutboxContext<'_, C>,
            models: &[Self],
        ) -> __outbox::Result<()>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
            Self: __outbox::ModelIdentity,
        {
            __outbox::update(ctx, models)
        }
        ///Inserts or updates all `models` with one upsert statement (split only at the backend's bind-parameter limit) and records their outbox rows.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn save_all<C>(
            ctx: &mut __outbox::OutboxContext<'_, C>,
            models: &[Self],
        ) -> __outbox::Result<()>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
        {
            __outbox::save(ctx, models)
        }
        ///Deletes the rows of all `models` with one DELETE and records their outbox rows. Returns how many existed.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn delete_all<C>(
            ctx: &mut __outbox::OutboxContext<'_, C>,
            models: &[Self],
        ) -> __outbox::Result<usize>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
            Self: __outbox::ModelIdentity,
        {
            let ids: ::std::vec::Vec<i64> = models
                .iter()
                .map(<Self as __outbox::ModelIdentity>::identity)
                .collect();
            __outbox::delete::<C, Self>(ctx, &ids)
        }
        ///Deletes the objects with these identifiers with one DELETE and records their outbox rows. Returns how many existed.
        #[allow(unused_variables, clippy::needless_lifetimes)]
        pub fn delete_by_ids<C>(
            ctx: &mut __outbox::OutboxContext<'_, C>,
            ids: &[i64],
        ) -> __outbox::Result<usize>
        where
            C: __outbox::OutboxConnection,
            Self: __outbox::ModelWrites<C>,
            Self: __outbox::OutboxRows,
        {
            __outbox::delete::<C, Self>(ctx, ids)
        }
    }
    ::diesel_outbox::__outbox_if_async! {
        #[automatically_derived] impl User { #[doc =
        "Inserts this model and records one control outbox row per target cell, in `ctx`'s transaction. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn insert_async
        < C > (& self, ctx : & mut __outbox::OutboxContext < '_, C >) -> __outbox::Result
        < () > where C : __outbox::AsyncOutboxConnection, Self :
        __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows {
        __outbox::insert_async(ctx, ::core::slice::from_ref(self)). await } #[doc =
        "Updates this model's row (by primary key) and records one control outbox row per target cell. Fails with `Error::ModelNotFound` if the row does not exist. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn update_async
        < C > (& self, ctx : & mut __outbox::OutboxContext < '_, C >) -> __outbox::Result
        < () > where C : __outbox::AsyncOutboxConnection, Self :
        __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows, Self :
        __outbox::ModelIdentity { __outbox::update_async(ctx,
        ::core::slice::from_ref(self)). await } #[doc =
        "Inserts this model or, if its primary key exists, updates it (one upsert), and records one control outbox row per target cell. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn save_async <
        C > (& self, ctx : & mut __outbox::OutboxContext < '_, C >) -> __outbox::Result <
        () > where C : __outbox::AsyncOutboxConnection, Self : __outbox::AsyncModelWrites
        < C >, Self : __outbox::OutboxRows { __outbox::save_async(ctx,
        ::core::slice::from_ref(self)). await } #[doc =
        "Deletes this model's row and records one control outbox row per target cell, as the row was. Returns whether it existed. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn delete_async
        < C > (& self, ctx : & mut __outbox::OutboxContext < '_, C >) -> __outbox::Result
        < bool > where C : __outbox::AsyncOutboxConnection, Self :
        __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows, Self :
        __outbox::ModelIdentity { let id = < Self as __outbox::ModelIdentity >
        ::identity(self); __outbox::delete_async:: < C, Self > (ctx, & [id]). await
        .map(| deleted | deleted > 0) } #[doc =
        "Deletes the object with this identifier, if it exists, and records its outbox rows. Returns whether it existed. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn
        delete_by_id_async < C > (ctx : & mut __outbox::OutboxContext < '_, C >, id :
        impl __outbox::Identifier) -> __outbox::Result < bool > where C :
        __outbox::AsyncOutboxConnection, Self : __outbox::AsyncModelWrites < C >, Self :
        __outbox::OutboxRows { let id = __outbox::Identifier::to_identifier(& id);
        __outbox::delete_async:: < C, Self > (ctx, & [id]). await .map(| deleted |
        deleted > 0) } #[doc =
        "Inserts all `models` with one INSERT (split only at the backend's bind-parameter limit) and records their outbox rows. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn
        insert_all_async < C > (ctx : & mut __outbox::OutboxContext < '_, C >, models : &
        [Self]) -> __outbox::Result < () > where C : __outbox::AsyncOutboxConnection,
        Self : __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows {
        __outbox::insert_async(ctx, models). await } #[doc =
        "Updates every model's row by primary key (one UPDATE each: SQL has no portable multi-row UPDATE) and records their outbox rows. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn
        update_all_async < C > (ctx : & mut __outbox::OutboxContext < '_, C >, models : &
        [Self]) -> __outbox::Result < () > where C : __outbox::AsyncOutboxConnection,
        Self : __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows, Self :
        __outbox::ModelIdentity { __outbox::update_async(ctx, models). await } #[doc =
        "Inserts or updates all `models` with one upsert statement (split only at the backend's bind-parameter limit) and records their outbox rows. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn
        save_all_async < C > (ctx : & mut __outbox::OutboxContext < '_, C >, models : &
        [Self]) -> __outbox::Result < () > where C : __outbox::AsyncOutboxConnection,
        Self : __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows {
        __outbox::save_async(ctx, models). await } #[doc =
        "Deletes the rows of all `models` with one DELETE and records their outbox rows. Returns how many existed. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn
        delete_all_async < C > (ctx : & mut __outbox::OutboxContext < '_, C >, models : &
        [Self]) -> __outbox::Result < usize > where C : __outbox::AsyncOutboxConnection,
        Self : __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows, Self :
        __outbox::ModelIdentity { let ids : ::std::vec::Vec < i64 > = models.iter().map(<
        Self as __outbox::ModelIdentity > ::identity).collect(); __outbox::delete_async::
        < C, Self > (ctx, & ids). await } #[doc =
        "Deletes the objects with these identifiers with one DELETE and records their outbox rows. Returns how many existed. On a diesel-async connection (`outbox_context_async`)."]
        #[allow(unused_variables, clippy::needless_lifetimes)] pub async fn
        delete_by_ids_async < C > (ctx : & mut __outbox::OutboxContext < '_, C >, ids : &
        [i64]) -> __outbox::Result < usize > where C : __outbox::AsyncOutboxConnection,
        Self : __outbox::AsyncModelWrites < C >, Self : __outbox::OutboxRows {
        __outbox::delete_async:: < C, Self > (ctx, ids). await } }
    }
};

// `__outbox_model_writes!(diesel::sqlite::SqliteConnection)` expands to:

#[automatically_derived]
impl __outbox::ModelWrites<diesel::sqlite::SqliteConnection> for User {
    const COLUMNS: usize = 2usize;
    fn insert_rows(
        conn: &mut diesel::sqlite::SqliteConnection,
        models: &[Self],
        _token: __outbox::Token<'_, Self>,
    ) -> __outbox::Result<()> {
        if let [model] = models {
            let _: usize = __outbox::diesel::RunQueryDsl::execute(
                __outbox::diesel::insert_into(users::table)
                    .values(__OutboxRow::of(model)),
                &mut *conn,
            )?;
            return ::core::result::Result::Ok(());
        }
        let rows: ::std::vec::Vec<_> = models.iter().map(__OutboxRow::of).collect();
        let _: usize = __outbox::diesel::RunQueryDsl::execute(
            __outbox::diesel::insert_into(users::table).values(rows),
            &mut *conn,
        )?;
        ::core::result::Result::Ok(())
    }
    fn update_row(
        conn: &mut diesel::sqlite::SqliteConnection,
        model: &Self,
        _token: __outbox::Token<'_, Self>,
    ) -> __outbox::Result<usize> {
        let target = __outbox::diesel::QueryDsl::find(users::table, &model.id);
        ::core::result::Result::Ok(
            __outbox::diesel::RunQueryDsl::execute(
                __outbox::diesel::update(target).set(__OutboxRow::of(model)),
                &mut *conn,
            )?,
        )
    }
    fn upsert_rows(
        conn: &mut diesel::sqlite::SqliteConnection,
        models: &[Self],
        _token: __outbox::Token<'_, Self>,
    ) -> __outbox::Result<()> {
        use __outbox::diesel::ExpressionMethods as _;
        if let [model] = models {
            let _: usize = __outbox::diesel::RunQueryDsl::execute(
                __outbox::diesel::insert_into(users::table)
                    .values(__OutboxRow::of(model))
                    .on_conflict(users::id)
                    .do_update()
                    .set((
                        users::name.eq(__outbox::diesel::upsert::excluded(users::name)),
                    )),
                &mut *conn,
            )?;
            return ::core::result::Result::Ok(());
        }
        let rows: ::std::vec::Vec<_> = models.iter().map(__OutboxRow::of).collect();
        let _: usize = __outbox::diesel::RunQueryDsl::execute(
            __outbox::diesel::insert_into(users::table)
                .values(rows)
                .on_conflict(users::id)
                .do_update()
                .set((users::name.eq(__outbox::diesel::upsert::excluded(users::name)),)),
            &mut *conn,
        )?;
        ::core::result::Result::Ok(())
    }
    fn delete_rows(
        conn: &mut diesel::sqlite::SqliteConnection,
        ids: &[i64],
        _token: __outbox::Token<'_, Self>,
    ) -> __outbox::Result<::std::vec::Vec<Self>> {
        use __outbox::diesel::ExpressionMethods as _;
        let keys = ids
            .iter()
            .map(|id| __outbox::primary_key::<i64>("users", *id))
            .collect::<__outbox::Result<::std::vec::Vec<_>>>()?;
        let target = __outbox::diesel::QueryDsl::filter(
            users::table,
            users::id.eq_any(keys),
        );
        ::core::result::Result::Ok(
            __outbox::diesel::RunQueryDsl::get_results(
                __outbox::diesel::delete(target)
                    .returning(
                        <Self as __outbox::diesel::SelectableHelper<
                            <diesel::sqlite::SqliteConnection as __outbox::diesel::Connection>::Backend,
                        >>::as_returning(),
                    ),
                &mut *conn,
            )?,
        )
    }
    fn load_row(
        conn: &mut diesel::sqlite::SqliteConnection,
        id: i64,
    ) -> __outbox::Result<::core::option::Option<Self>> {
        let key = __outbox::primary_key::<i64>("users", id)?;
        let query = __outbox::diesel::QueryDsl::select(
            __outbox::diesel::QueryDsl::find(users::table, key),
            <Self as __outbox::diesel::SelectableHelper<
                <diesel::sqlite::SqliteConnection as __outbox::diesel::Connection>::Backend,
            >>::as_select(),
        );
        ::core::result::Result::Ok(
            __outbox::diesel::OptionalExtension::optional(
                __outbox::diesel::RunQueryDsl::first(query, conn),
            )?,
        )
    }
    fn load_rows(
        conn: &mut diesel::sqlite::SqliteConnection,
        ids: &[i64],
    ) -> __outbox::Result<::std::vec::Vec<Self>> {
        use __outbox::diesel::ExpressionMethods as _;
        let keys = ids
            .iter()
            .map(|id| __outbox::primary_key::<i64>("users", *id))
            .collect::<__outbox::Result<::std::vec::Vec<_>>>()?;
        let query = __outbox::diesel::QueryDsl::select(
            __outbox::diesel::QueryDsl::filter(users::table, users::id.eq_any(keys)),
            <Self as __outbox::diesel::SelectableHelper<
                <diesel::sqlite::SqliteConnection as __outbox::diesel::Connection>::Backend,
            >>::as_select(),
        );
        ::core::result::Result::Ok(__outbox::diesel::RunQueryDsl::load(query, conn)?)
    }
    fn load_page(
        conn: &mut diesel::sqlite::SqliteConnection,
        after: ::core::option::Option<i64>,
        limit: i64,
    ) -> __outbox::Result<::std::vec::Vec<Self>> {
        use __outbox::diesel::ExpressionMethods as _;
        let page = match after {
            ::core::option::Option::None => {
                __outbox::diesel::RunQueryDsl::load(
                    __outbox::diesel::QueryDsl::limit(
                        __outbox::diesel::QueryDsl::order(
                            __outbox::diesel::QueryDsl::select(
                                users::table,
                                <Self as __outbox::diesel::SelectableHelper<
                                    <diesel::sqlite::SqliteConnection as __outbox::diesel::Connection>::Backend,
                                >>::as_select(),
                            ),
                            users::id.asc(),
                        ),
                        limit,
                    ),
                    conn,
                )?
            }
            ::core::option::Option::Some(after) => {
                let after = __outbox::primary_key::<i64>("users", after)?;
                __outbox::diesel::RunQueryDsl::load(
                    __outbox::diesel::QueryDsl::limit(
                        __outbox::diesel::QueryDsl::order(
                            __outbox::diesel::QueryDsl::select(
                                __outbox::diesel::QueryDsl::filter(
                                    users::table,
                                    users::id.gt(after),
                                ),
                                <Self as __outbox::diesel::SelectableHelper<
                                    <diesel::sqlite::SqliteConnection as __outbox::diesel::Connection>::Backend,
                                >>::as_select(),
                            ),
                            users::id.asc(),
                        ),
                        limit,
                    ),
                    conn,
                )?
            }
        };
        ::core::result::Result::Ok(page)
    }
    fn count_rows(conn: &mut diesel::sqlite::SqliteConnection) -> __outbox::Result<i64> {
        ::core::result::Result::Ok(
            __outbox::diesel::RunQueryDsl::get_result(
                __outbox::diesel::QueryDsl::count(users::table),
                conn,
            )?,
        )
    }
}
