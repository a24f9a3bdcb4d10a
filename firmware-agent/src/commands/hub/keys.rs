//! `firmware-agent hub keys`: the room's public keys for USB bundles, made on
//! first need, for the province to pin ahead of the first stick.

use std::path::Path;

use classroom_bundle::keys::RoomKeys;

use crate::exit::Exit;
use crate::hub::usb;

pub fn keys(config_path: &Path) -> Exit {
    let (config, _store) = match crate::commands::open_store(config_path) {
        Ok(opened) => opened,
        Err(exit) => return exit,
    };
    match RoomKeys::load_or_create(&usb::keys_path(&config.storage.data_dir)) {
        Ok(keys) => {
            println!("school_code: {}", config.room.school_code);
            println!("room_id: {}", config.room.room_id);
            println!("room_signing_key: {}", keys.verifying_key_text());
            println!("room_recipient: {}", keys.recipient_text());
            Exit::Success
        }
        Err(err) => {
            eprintln!("{err}");
            Exit::Failure
        }
    }
}
