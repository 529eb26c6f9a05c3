//! Every identity operation and every error case, through the client library, against a real
//! server and a real Redis.

mod common;

use common::TestServer;
use idserver::wire::{Reply, Request};
use idserver::ErrorCode;
use uuid::Uuid;

fn code<T: std::fmt::Debug>(result: idserver::Result<T>) -> ErrorCode {
    result.expect_err("expected an error").code()
}

#[tokio::test]
async fn create_then_lookup_and_reverse_lookup_show_the_record() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let uuid = c
        .create("alice", "Alice Liddell", Some("pw"))
        .await
        .unwrap();
    assert_eq!(uuid.get_version_num(), 4);

    let account = c.lookup("alice").await.unwrap();
    assert_eq!(account.uuid, uuid);
    assert_eq!(account.login, "alice");
    assert_eq!(account.real_name, "Alice Liddell");
    assert!(
        account.client_addr.starts_with("127.0.0.1:"),
        "{}",
        account.client_addr
    );
    assert!(account.has_password);
    assert_eq!(account.created_ms, account.changed_ms);
    let now = idserver::time::now_ms();
    assert!(account.created_ms <= now && now - account.created_ms < 60_000);

    assert_eq!(c.reverse_lookup(uuid).await.unwrap(), account);
}

#[tokio::test]
async fn missing_login_or_uuid_is_not_found() {
    let t = TestServer::start().await;
    let mut c = t.client();
    assert_eq!(code(c.lookup("nobody").await), ErrorCode::NotFound);
    assert_eq!(
        code(c.reverse_lookup(Uuid::new_v4()).await),
        ErrorCode::NotFound
    );
    assert_eq!(code(c.delete("nobody", None).await), ErrorCode::NotFound);
    assert_eq!(
        code(c.modify("nobody", "somebody", None).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn creating_a_taken_login_fails_and_keeps_the_first() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let first = c.create("bob", "Bob", None).await.unwrap();
    assert_eq!(
        code(c.create("bob", "Other Bob", None).await),
        ErrorCode::LoginExists
    );
    let account = c.lookup("bob").await.unwrap();
    assert_eq!((account.uuid, account.real_name.as_str()), (first, "Bob"));
    assert_eq!(
        c.status().await.unwrap().clock,
        1,
        "a refusal takes no clock"
    );
    // Renames and deletes that find another owner are refused and write nothing either.
    let other = c.create("zed", "", None).await.unwrap();
    assert_eq!(
        code(c.modify("bob", "zed", None).await),
        ErrorCode::NewNameTaken
    );
    assert_eq!(c.lookup("zed").await.unwrap().uuid, other);
    assert_eq!(c.status().await.unwrap().clock, 2);
}

#[tokio::test]
async fn logins_are_compared_after_nfc_normalisation() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let uuid = c.create("Jos\u{e9}", "", None).await.unwrap();
    assert_eq!(c.lookup("Jose\u{301}").await.unwrap().uuid, uuid);
    assert_eq!(
        code(c.create("Jose\u{301}", "", None).await),
        ErrorCode::LoginExists
    );
}

#[tokio::test]
async fn modify_renames_and_keeps_the_uuid() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let uuid = c.create("carol", "Carol", None).await.unwrap();
    c.create("dave", "Dave", None).await.unwrap();

    assert_eq!(
        code(c.modify("carol", "dave", None).await),
        ErrorCode::NewNameTaken
    );
    assert_eq!(c.modify("carol", "caroline", None).await.unwrap(), uuid);
    assert_eq!(code(c.lookup("carol").await), ErrorCode::NotFound);
    let renamed = c.lookup("caroline").await.unwrap();
    assert_eq!(renamed.uuid, uuid);
    assert!(renamed.changed_ms >= renamed.created_ms);
    assert_eq!(c.reverse_lookup(uuid).await.unwrap().login, "caroline");
    assert_eq!(c.users().await.unwrap(), vec!["caroline", "dave"]);
}

#[tokio::test]
async fn passwords_guard_modify_and_delete_but_not_lookups() {
    let t = TestServer::start().await;
    let mut c = t.client();
    c.create("erin", "Erin", Some("correct horse"))
        .await
        .unwrap();

    assert_eq!(
        code(c.modify("erin", "erin2", None).await),
        ErrorCode::PasswordRequired
    );
    assert_eq!(
        code(c.modify("erin", "erin2", Some("wrong")).await),
        ErrorCode::WrongPassword
    );
    assert_eq!(
        code(c.delete("erin", None).await),
        ErrorCode::PasswordRequired
    );
    assert_eq!(
        code(c.delete("erin", Some("wrong")).await),
        ErrorCode::WrongPassword
    );
    assert!(c.lookup("erin").await.is_ok(), "lookups need no password");

    c.modify("erin", "erin2", Some("correct horse"))
        .await
        .unwrap();
    c.delete("erin2", Some("correct horse")).await.unwrap();
    assert_eq!(code(c.lookup("erin2").await), ErrorCode::NotFound);
}

#[tokio::test]
async fn an_account_without_password_can_be_deleted_by_anyone() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let uuid = c.create("frank", "Frank", None).await.unwrap();
    assert_eq!(c.delete("frank", None).await.unwrap(), uuid);
    assert_eq!(code(c.reverse_lookup(uuid).await), ErrorCode::NotFound);
    assert!(c.users().await.unwrap().is_empty());
}

#[tokio::test]
async fn get_lists_users_uuids_and_all_sorted_without_passwords() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let mut uuids = Vec::new();
    for login in ["zed", "amy", "mia"] {
        uuids.push(
            c.create(login, &format!("{login} real"), Some("pw"))
                .await
                .unwrap(),
        );
    }
    uuids.sort();
    assert_eq!(c.users().await.unwrap(), vec!["amy", "mia", "zed"]);
    assert_eq!(c.uuids().await.unwrap(), uuids);
    let all = c.all().await.unwrap();
    let logins: Vec<_> = all.iter().map(|a| a.login.as_str()).collect();
    assert_eq!(logins, vec!["amy", "mia", "zed"]);
    assert!(all
        .iter()
        .all(|a| a.has_password && a.real_name.ends_with(" real")));
    let reply = c
        .call(Request::List {
            what: idserver::wire::ListKind::All,
            from: 0,
        })
        .await
        .unwrap();
    let encoded = format!("{reply:?}");
    assert!(
        !encoded.contains("argon2"),
        "a listing leaked a password hash"
    );
}

#[tokio::test]
async fn invalid_input_is_refused_before_storage() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let long = "x".repeat(65);
    for login in ["", "has space", "slash/", long.as_str()] {
        assert_eq!(
            code(c.create(login, "", None).await),
            ErrorCode::InvalidInput,
            "{login:?}"
        );
    }
    assert_eq!(
        code(c.create("ok", &"r".repeat(257), None).await),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        code(c.create("ok", "bell\u{7}", None).await),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        code(c.modify("ok", "", None).await),
        ErrorCode::InvalidInput
    );
    let bad_digest = Request::Create {
        login: "ok".into(),
        real_name: String::new(),
        password: Some(serde_bytes::ByteBuf::from(b"clear".to_vec())),
        request_id: Uuid::new_v4(),
    };
    assert_eq!(code(c.call(bad_digest).await), ErrorCode::InvalidInput);
    assert!(c.users().await.unwrap().is_empty());
    assert_eq!(c.status().await.unwrap().clock, 0, "no event was made");
}

#[tokio::test]
async fn a_retried_write_returns_the_first_result_and_writes_once() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let create = Request::Create {
        login: "gina".into(),
        real_name: "Gina".into(),
        password: None,
        request_id: Uuid::new_v4(),
    };
    let first = c.call(create.clone()).await.unwrap();
    let Reply::Created { uuid } = first else {
        panic!("{first:?}")
    };
    assert_eq!(c.call(create).await.unwrap(), Reply::Created { uuid });

    let delete = Request::Delete {
        login: "gina".into(),
        password: None,
        request_id: Uuid::new_v4(),
    };
    assert_eq!(
        c.call(delete.clone()).await.unwrap(),
        Reply::Deleted { uuid }
    );
    assert_eq!(
        c.call(delete).await.unwrap(),
        Reply::Deleted { uuid },
        "retry after success"
    );
    assert_eq!(c.status().await.unwrap().clock, 2, "two events, not four");
}

#[tokio::test]
async fn concurrent_clients_are_served_and_a_contended_login_goes_to_one() {
    let t = TestServer::start().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32 {
        let mut c = t.client();
        tasks.spawn(async move { c.create(&format!("user{i}"), "", None).await.map(|_| ()) });
    }
    for _ in 0..8 {
        let mut c = t.client();
        tasks.spawn(async move { c.create("contended", "", None).await.map(|_| ()) });
    }
    let results = tasks.join_all().await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let exists = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == ErrorCode::LoginExists))
        .count();
    assert_eq!((ok, exists), (33, 7), "{results:?}");
    let mut c = t.client();
    assert_eq!(c.users().await.unwrap().len(), 33);
    assert_eq!(c.status().await.unwrap().clock, 33);
}

#[tokio::test]
async fn a_client_of_another_cluster_is_refused() {
    let t = TestServer::start().await;
    let mut c = idserver::client::Client::to(t.addr());
    assert_eq!(code(c.users().await), ErrorCode::WrongCluster);
}

/// `Events` (what `idclient --events` shows) never carries a password hash: it shows that the
/// account has a password, the argon2id hash stays inside the cluster.
#[tokio::test]
async fn events_sent_to_clients_carry_no_password_hash() {
    let t = TestServer::start().await;
    let mut c = t.client();
    c.create("harriet", "Harriet", Some("secret"))
        .await
        .unwrap();
    c.create("hugo", "Hugo", None).await.unwrap();
    let events = c.events(0, 100).await.unwrap();
    let hashes: Vec<Option<String>> = events
        .iter()
        .filter_map(|l| match &l.event.change {
            idserver::event::Change::Create { password_hash, .. } => Some(password_hash.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        hashes,
        vec![
            Some(idserver::event::REDACTED_PASSWORD_HASH.to_string()),
            None
        ]
    );
    // The node itself keeps the hash: the password still checks.
    let wrong = c.delete("harriet", Some("guess")).await.unwrap_err();
    assert_eq!(wrong.code(), ErrorCode::WrongPassword);
    c.delete("harriet", Some("secret")).await.unwrap();
}

/// A forwarded create carries its argon2id hash, stored as it is and later verified with the
/// parameters it names: a hash with other parameters (a memory or time bomb for every node
/// that verifies it) or an overlong client address is refused, and nothing is stored.
#[tokio::test]
async fn a_forward_with_foreign_argon2_parameters_is_refused() {
    let t = TestServer::start().await;
    let mut c = t.client();
    // Once a write went through, the node coordinates and its status names the epoch.
    c.create("first", "First", None).await.unwrap();
    let epoch = c.status().await.unwrap().epoch;
    let create = |login: &str| Request::Create {
        login: login.into(),
        real_name: "Mallory".into(),
        password: None,
        request_id: Uuid::new_v4(),
    };
    let bomb = "$argon2id$v=19$m=4194304,t=1000,p=1$c2FsdHNhbHRzYWx0$\
                dGhpcyBpcyBub3QgYSByZWFsIGhhc2ggYXQgYWxsISE";
    let forged = Request::Forward {
        epoch,
        client_addr: "203.0.113.9:4000".into(),
        request: Box::new(create("mallory")),
        password_hash: Some(bomb.into()),
        verified_uuid: None,
    };
    let err = c.call(forged).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    let long_addr = Request::Forward {
        epoch,
        client_addr: "x".repeat(1000),
        request: Box::new(create("mallory2")),
        password_hash: None,
        verified_uuid: None,
    };
    let err = c.call(long_addr).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");
    for login in ["mallory", "mallory2"] {
        assert_eq!(
            c.lookup(login).await.unwrap_err().code(),
            ErrorCode::NotFound
        );
    }
}

#[tokio::test]
async fn listings_come_in_pages_that_together_hold_every_account_once() {
    let t = TestServer::start().await;
    let mut c = t.client();
    let mut logins: Vec<String> = (0..300).map(|n| format!("user{n:03}")).collect();
    for login in &logins {
        c.create(login, "", None).await.unwrap();
    }
    logins.sort();
    assert_eq!(c.users().await.unwrap(), logins);
    assert_eq!(c.all().await.unwrap().len(), 300);

    // Pages of at least 7: each sorted, none overlapping, together everything.
    let url = format!("unix://{}/redis.sock", t.dir.path().display());
    let store = idserver::store::Store::connect(&url).await.unwrap();
    let (mut from, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let (page, next) = store.logins_page(from, 7).await.unwrap();
        assert!(
            page.len() >= 7 || next.is_none(),
            "a short page before the end"
        );
        assert_eq!(store.accounts_of(&page).await.unwrap().len(), page.len());
        seen.extend(page.into_keys());
        pages += 1;
        match next {
            Some(next) => {
                assert!(next > from);
                from = next;
            }
            None => break,
        }
    }
    assert!(pages > 10, "{pages} pages");
    seen.sort();
    assert_eq!(seen, logins, "every login once");
}

/// `events` answers at most `EVENTS_PAGE_MAX` events, whatever limit is asked (the whole log
/// would be tens of MB read while Redis blocks, for anyone who asks: issue 28); the client
/// library pages by the last clock and gets them all.
#[tokio::test]
async fn events_are_answered_a_page_at_a_time() {
    use idserver::limits::EVENTS_PAGE_MAX;
    use idserver::wire::{Reply, Request};
    let t = TestServer::start().await;
    let total = EVENTS_PAGE_MAX as usize + 7;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut c = t.client();
            tokio::spawn(async move {
                for n in (w..total).step_by(8) {
                    c.create(&format!("page{n}"), "", None).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let mut c = t.client();
    let asked = Request::Events {
        since: 0,
        limit: u32::MAX,
    };
    match c.call(asked).await.unwrap() {
        Reply::Events(page) => assert_eq!(page.len(), EVENTS_PAGE_MAX as usize),
        other => panic!("expected events, got {other:?}"),
    }
    let all = c.events(0, u32::MAX).await.unwrap();
    let creates = all
        .iter()
        .filter(|e| matches!(e.event.change, idserver::event::Change::Create { .. }))
        .count();
    assert_eq!(creates, total);
    assert!(all
        .windows(2)
        .all(|w| w[1].event.clock == w[0].event.clock + 1));
    assert_eq!(c.events(5, 3).await.unwrap().len(), 3);
}
