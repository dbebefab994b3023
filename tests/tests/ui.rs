//! Compile-time guarantees, proven by trybuild: what must not compile does not, for the
//! intended reason (see the `.stderr` files), and the supported shapes compile and run.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
}
