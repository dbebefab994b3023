// What a derive of another release expands to: the runtime refuses it with one message.
diesel_outbox::__outbox_derive!("0.0.9", struct Expanded;);

fn main() {}
