//! Unit tests of the node state machine that need its private state.

use super::*;

fn node_ref(n: u128, rank: u32) -> NodeRef {
    NodeRef {
        node_id: NodeId::from_u128(n),
        rank: Some(rank),
        addr: SocketAddr::from(([127, 0, 0, 1], 5150 + n as u16)),
    }
}

/// A follower of rank 2 that knows no coordinator yet.
fn follower() -> Node {
    let config = CoreConfig::default();
    let me = node_ref(2, 2);
    let mut node = Node::new(config, me.node_id, me.addr);
    node.step(
        0,
        Input::Start {
            epoch: 0,
            clock: 0,
            last_epoch: 0,
        },
    );
    node.step(config.join_window_ms, Input::Tick);
    assert_eq!(node.role, Role::Follower);
    node
}

fn master(clock: Clock, answer: bool) -> Input {
    let a = node_ref(1, 1);
    Input::Message {
        src: a.addr,
        msg: Message {
            from: a,
            epoch: 1,
            to: None,
            body: Body::Master {
                coordinator: a,
                clock,
                members: vec![a],
                answer,
            },
        },
    }
}

/// Issue 28, medium 3: a coordinator's answer to a client's GETMASTER, sent to a member
/// because the question's source was spoofed, changes nothing there: before, the member
/// took the answer's current clock for the clock its coordinator was elected at, which
/// settles two coordinators of one epoch.
#[test]
fn a_members_copy_of_an_answer_to_a_client_changes_nothing() {
    let mut node = follower();
    let now_ms = CoreConfig::default().join_window_ms + 1;
    node.step(now_ms, master(5, false));
    assert_eq!(
        node.coordinator.map(|c| c.node_id),
        Some(NodeId::from_u128(1))
    );
    assert_eq!(node.coordinator_clock, 5);
    node.step(now_ms + 1, master(99, true));
    assert_eq!(
        node.coordinator_clock, 5,
        "an answer to a client was taken as a claim"
    );
}

/// The answers a node gives clients say they are answers.
#[test]
fn answers_to_clients_are_marked() {
    let mut node = follower();
    let now_ms = CoreConfig::default().join_window_ms + 1;
    node.step(now_ms, master(5, false));
    let client: SocketAddr = "198.18.0.9:4000".parse().unwrap();
    let out = node.step(
        now_ms + 1,
        Input::Query {
            src: client,
            body: Body::GetMaster,
        },
    );
    let answered = out.iter().any(|o| {
        matches!(o, Output::Send { to, msg } if *to == client
            && matches!(msg.body, Body::Master { answer: true, .. }))
    });
    assert!(answered, "{out:?}");
}

/// A datagram naming another member is not taken: a vote sealed for one candidate
/// counts for no other.
#[test]
fn a_datagram_for_another_member_is_ignored() {
    let mut node = follower();
    let now_ms = CoreConfig::default().join_window_ms + 1;
    let Input::Message { src, mut msg } = master(5, false) else {
        unreachable!()
    };
    msg.to = Some(NodeId::from_u128(3));
    node.step(
        now_ms,
        Input::Message {
            src,
            msg: msg.clone(),
        },
    );
    assert_eq!(node.coordinator, None);
    msg.to = Some(node.me.node_id);
    node.step(now_ms, Input::Message { src, msg });
    assert_eq!(
        node.coordinator.map(|c| c.node_id),
        Some(NodeId::from_u128(1))
    );
}
