//! The teacher's screen, end to end: who may use it, and the page itself in a
//! real browser.

mod common;

use std::process::Command;

use common::Room;

/// A teacher's laptop on the room's network, for real: the agent runs in a
/// private network namespace where 192.0.2.1 is one of the machine's own
/// addresses, so requests to it arrive from a non-loopback peer. Nothing
/// leaves the namespace.
#[test]
fn from_the_lan_the_teacher_needs_the_pin_and_a_tablet_token_is_no_substitute() {
    let room = Room::new("[panel]\nteacher_pin = \"482193\"\n");
    let port = room.http.port();
    // The agent must listen on every address of the namespace, not only loopback.
    let config = std::fs::read_to_string(&room.config_path).unwrap().replace(&format!("listen = \"{}\"", room.http), &format!("listen = \"0.0.0.0:{port}\""));
    std::fs::write(&room.config_path, config).unwrap();
    let script = format!(
        r#"set -u
ip link set lo up && ip addr add 192.0.2.1/32 dev lo
'{bin}' run --config '{config}' 2>'{dir}/agent.log' & agent=$!
timeout 20 grep -m1 -q "agent ready" <(tail -f '{dir}/agent.log') || {{ echo "agent did not start"; cat '{dir}/agent.log'; exit 1; }}
lan=http://192.0.2.1:{port}; local=http://127.0.0.1:{port}
code() {{ curl -s -o /dev/null -w '%{{http_code}}' "$@"; }}
json='content-type: application/json'
echo "lan_state $(code $lan/api/panel/state)"
echo "lan_bell $(code -X POST $lan/api/bell/ring)"
echo "lan_tablets $(code $lan/api/tablets)"
pairing=$(curl -s -X POST $local/api/tablets/pairing)
pin=$(printf '%s' "$pairing" | python3 -c 'import json,sys; print(json.load(sys.stdin)["window"]["code"])')
token=$(curl -s -X POST -H "$json" -d "{{\"code\":\"$pin\",\"name\":\"Bàn 1\"}}" $lan/tablet/pair | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
echo "lan_tablets_with_tablet_token $(code -H "authorization: Bearer $token" -b "panel_session=$token" $lan/api/tablets)"
echo "wrong $(curl -s -X POST -H "$json" -d '{{"pin":"000000"}}' $lan/api/panel/login)"
echo "right $(code -c '{dir}/jar' -X POST -H "$json" -d '{{"pin":"482193"}}' $lan/api/panel/login)"
echo "lan_state_with_session $(code -b '{dir}/jar' $lan/api/panel/state)"
echo "lan_tablets_with_session $(code -b '{dir}/jar' $lan/api/tablets)"
echo "local_state $(code $local/api/panel/state)"
for n in 1 2 3 4 5; do last=$(curl -s -X POST -H "$json" -d '{{"pin":"111111"}}' $lan/api/panel/login); done
echo "fifth_wrong $last"
echo "right_while_locked $(code -X POST -H "$json" -d '{{"pin":"482193"}}' $lan/api/panel/login)"
kill -TERM $agent; wait $agent; echo "exit $?"
"#,
        bin = common::agent_binary().display(),
        config = room.config_path.display(),
        dir = room.dir.path().display(),
    );
    let output = Command::new("unshare").args(["--map-root-user", "--net", "bash", "-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{text}{}", String::from_utf8_lossy(&output.stderr));
    let answer = |key: &str| text.lines().find_map(|line| line.strip_prefix(&format!("{key} "))).unwrap_or_else(|| panic!("no {key} in:\n{text}")).to_owned();
    assert_eq!(answer("lan_state"), "401");
    assert_eq!(answer("lan_bell"), "401");
    assert_eq!(answer("lan_tablets"), "401");
    assert_eq!(answer("lan_tablets_with_tablet_token"), "401", "a tablet's token opens nothing of the teacher's");
    assert!(answer("wrong").contains("\"tries_left\":4"), "{text}");
    assert_eq!(answer("right"), "200");
    assert_eq!(answer("lan_state_with_session"), "200");
    assert_eq!(answer("lan_tablets_with_session"), "200");
    assert_eq!(answer("local_state"), "200", "the panel itself needs no PIN");
    assert!(answer("fifth_wrong").contains("locked_out"), "{text}");
    assert_eq!(answer("right_while_locked"), "429");
    assert_eq!(answer("exit"), "0");
}
