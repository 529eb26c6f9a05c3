# Evaluates nix/module.nix with the nixpkgs `lib` alone (no package set: what Nix 2.8 without
# network can do) for several option sets, and checks what it renders: the command line, the
# systemd unit, the firewall, the assertions, and that bad values are refused. Evaluates to
# the list of failures: `[ ]` when everything holds.
#
#   nix-instantiate --eval --strict nix/tests/module-eval.nix --arg lib 'import LIB/lib'
{ lib }:

let
  inherit (lib) mkOption types;

  fakePackage = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  pkgs = {
    idserver = fakePackage "idserver";
    redis = fakePackage "redis";
    coreutils = fakePackage "coreutils";
  };

  # The NixOS options the module sets, declared as narrowly as honest (they are NixOS's).
  stubs = import ./stubs.nix { inherit lib; };

  evalWith = settings: (lib.evalModules {
    modules = [
      ../module.nix
      stubs
      { _module.args.pkgs = pkgs; services.idserver = settings; }
    ];
  }).config;

  creds = {
    tlsCert = "/run/keys/n1.pem";
    tlsKey = "/run/keys/n1-key.pem";
    tlsCa = "/run/keys/ca.pem";
    clusterKeyFile = "/run/keys/cluster.key";
  };
  peers = [ "10.0.0.1:5151" "10.0.0.2:5151" "10.0.0.3:5151" ];

  failing = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  unit = config: config.systemd.services.idserver;
  execStart = config: (unit config).serviceConfig.ExecStart;
  # Whether evaluating what a configuration renders fails (a type error or a refused value).
  refused = settings:
    let config = evalWith settings;
    in !(builtins.tryEval (builtins.deepSeq [ config.services.idserver.commandLine (unit config) ] true)).success;

  check = name: ok: lib.optional (!ok) name;

  basic = evalWith { enable = true; credentials = creds; inherit peers; };
  full = evalWith {
    enable = true;
    cluster = "prod";
    port = 6000;
    mode = "strict";
    clusterSize = 3;
    multicast = { group = "239.255.51.51:6000"; interfaceAddress = "10.0.0.1"; };
    redis.url = "unix:///run/redis-idserver/redis.sock";
    workerThreads = 2;
    timings = { heartbeatMs = 50; electionWindowMs = 200; };
    openFirewall = true;
    credentials = creds;
    metricsListen = "127.0.0.1:9151";
    logFormat = "json";
    extraArgs = [ "--verbose" ];
  };
  plaintext = evalWith { enable = true; credentials.insecurePlaintext = true; inherit peers; };
  disabled = evalWith { credentials = creds; };
in
check "basic: the command line" (execStart basic ==
  "/nix/store/00000000000000000000000000000000-idserver/bin/idserver --numport 5151 --listen 0.0.0.0 --cluster idlab --data-dir /var/lib/idserver --mode whitepaper --appendfsync everysec --peers 10.0.0.1:5151,10.0.0.2:5151,10.0.0.3:5151 --min-acks 1 --redis-server /nix/store/00000000000000000000000000000000-redis/bin/redis-server --tls-cert /run/keys/n1.pem --tls-key /run/keys/n1-key.pem --tls-ca /run/keys/ca.pem --cluster-key-file /run/keys/cluster.key")
++ check "basic: no assertion fails" (failing basic == [ ])
++ check "basic: the firewall stays closed" (basic.networking.firewall.allowedTCPPorts == [ ])
++ check "basic: state directory and hardening" (
  let sc = (unit basic).serviceConfig; in
  sc.StateDirectory == "idserver" && sc.DynamicUser && sc.NoNewPrivileges
  && sc.Type == "notify" && sc.WatchdogSec == "10s" && lib.hasSuffix "kill -HUP $MAINPID" sc.ExecReload
  && sc.ProtectSystem == "strict" && sc.CapabilityBoundingSet == "" && sc.Restart == "on-failure")
++ check "basic: started after the network" (lib.elem "network-online.target" (unit basic).after
  && (unit basic).wantedBy == [ "multi-user.target" ])
++ check "full: multicast, strict, external Redis, timings" (
  let s = execStart full; has = f: lib.hasInfix f s; in
  has "--mcast 239.255.51.51:6000 --mcast-if 10.0.0.1" && has "--mode strict" && has "--cluster-size 3"
  && has "--redis unix:///run/redis-idserver/redis.sock" && !(has "--redis-server")
  && has "--worker-threads 2" && has "--heartbeat-ms 50" && has "--election-window-ms 200"
  && !(has "--stagger-ms") && has "--numport 6000" && has "--cluster prod" && lib.hasSuffix "--verbose" s
  && has "--metrics-listen 127.0.0.1:9151" && has "--log-format json")
++ check "basic: no metrics listener, text logs" (
  !(lib.hasInfix "--metrics-listen" (execStart basic)) && !(lib.hasInfix "--log-format" (execStart basic)))
++ check "a metrics address without a port is refused" (refused { enable = true; credentials = creds; metricsListen = "127.0.0.1"; })
++ check "full: TCP and UDP opened on the port" (full.networking.firewall.allowedTCPPorts == [ 6000 ]
  && full.networking.firewall.allowedUDPPorts == [ 6000 ])
++ check "full: no assertion fails" (failing full == [ ])
++ check "plaintext: said by name, no credentials" (
  lib.hasInfix "--insecure-plaintext" (execStart plaintext) && !(lib.hasInfix "--tls-cert" (execStart plaintext))
  && failing plaintext == [ ])
++ check "disabled: no service" (!(disabled.systemd.services ? idserver))
++ check "missing credentials: an assertion names them" (
  lib.any (lib.hasInfix "tlsCert, tlsKey, tlsCa and clusterKeyFile")
    (failing (evalWith { enable = true; inherit peers; credentials.tlsCert = "/run/keys/n1.pem"; })))
++ check "multicast without an interface: an assertion says so" (
  lib.any (lib.hasInfix "group and interfaceAddress go together")
    (failing (evalWith { enable = true; credentials = creds; multicast.group = "239.255.51.51:5151"; })))
++ check "a port out of range is refused" (refused { enable = true; credentials = creds; port = 70000; })
++ check "an unknown mode is refused" (refused { enable = true; credentials = creds; mode = "raft"; })
++ check "a unicast address as the multicast group is refused" (
  refused { enable = true; credentials = creds; multicast = { group = "10.0.0.1:5151"; interfaceAddress = "10.0.0.1"; }; })
++ check "a data directory outside /var/lib is refused" (refused { enable = true; credentials = creds; dataDir = "/tmp/idserver"; })
++ check "a cluster name with a space is refused" (refused { enable = true; credentials = creds; cluster = "my cluster"; })
++ check "zero worker threads are refused" (refused { enable = true; credentials = creds; workerThreads = 0; })
++ check "a peer without a port is refused" (refused { enable = true; credentials = creds; peers = [ "10.0.0.1" ]; })
