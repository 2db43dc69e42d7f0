//! The buyer page is embedded from `web/` (`include_dir!`): rebuild when any
//! of its files changes, a new one included.

fn main() {
    println!("cargo:rerun-if-changed=../web");
}
