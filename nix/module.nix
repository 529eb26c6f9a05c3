# The NixOS module of idserver: `services.idserver`. One node of a cluster, with its own Redis
# (started by idserver itself, the default) or an external one, peers or multicast, its
# credentials from files, the firewall opened for its port (TCP and UDP), and a hardened
# systemd service. Every option becomes an `idserver` flag (see docs/idserver.md).
{ config, lib, pkgs, ... }:

let
  cfg = config.services.idserver;
  inherit (lib) mkOption mkEnableOption mkIf types optionals optional;

  flag = name: value: [ "--${name}" (toString value) ];
  optFlag = name: value: optionals (value != null) (flag name value);

  args =
    flag "numport" cfg.port
    ++ flag "listen" cfg.listenAddress
    ++ flag "cluster" cfg.cluster
    ++ flag "data-dir" cfg.dataDir
    ++ flag "mode" cfg.mode
    ++ flag "appendfsync" cfg.appendfsync
    ++ optFlag "advertise" cfg.advertise
    ++ optionals (cfg.peers != [ ]) (flag "peers" (lib.concatStringsSep "," cfg.peers))
    ++ optionals (cfg.multicast.group != null) (
      flag "mcast" cfg.multicast.group ++ flag "mcast-if" cfg.multicast.interfaceAddress
    )
    ++ optFlag "cluster-size" cfg.clusterSize
    ++ flag "min-acks" cfg.minAcks
    ++ optFlag "worker-threads" cfg.workerThreads
    ++ (if cfg.redis.url != null
        then flag "redis" cfg.redis.url
        else flag "redis-server" "${cfg.redis.package}/bin/redis-server")
    ++ (if cfg.credentials.insecurePlaintext
        then [ "--insecure-plaintext" ]
        else flag "tls-cert" cfg.credentials.tlsCert
          ++ flag "tls-key" cfg.credentials.tlsKey
          ++ flag "tls-ca" cfg.credentials.tlsCa
          ++ flag "cluster-key-file" cfg.credentials.clusterKeyFile)
    ++ lib.concatLists (lib.mapAttrsToList (name: value: optFlag name value) {
      heartbeat-ms = cfg.timings.heartbeatMs;
      suspect-misses = cfg.timings.suspectMisses;
      dead-misses = cfg.timings.deadMisses;
      stagger-ms = cfg.timings.staggerMs;
      join-window-ms = cfg.timings.joinWindowMs;
      election-window-ms = cfg.timings.electionWindowMs;
    })
    ++ optional cfg.verbose "--verbose"
    ++ optFlag "metrics-listen" cfg.metricsListen
    ++ optionals (cfg.logFormat != "text") (flag "log-format" cfg.logFormat)
    ++ cfg.extraArgs;

  credentialFile = description: mkOption {
    type = types.nullOr types.path;
    default = null;
    inherit description;
  };

  nullOrTiming = description: mkOption {
    type = types.nullOr types.ints.positive;
    default = null;
    description = "${description} (null: idserver's default).";
  };
in
{
  options.services.idserver = {
    enable = mkEnableOption "idserver, one node of a replicated identity directory";

    package = mkOption {
      type = types.package;
      default = pkgs.idserver;
      defaultText = lib.literalExpression "pkgs.idserver";
      description = "The package providing the idserver binary.";
    };

    cluster = mkOption {
      type = types.strMatching "[^[:space:]]{1,64}";
      default = "idlab";
      description = "Name of the cluster; a Redis or a peer of another cluster is refused.";
    };

    port = mkOption {
      type = types.port;
      default = 5151;
      description = "Port for clients and peers: TCP for requests, UDP for cluster datagrams.";
    };

    listenAddress = mkOption {
      type = types.str;
      default = "0.0.0.0";
      description = "Address to listen on.";
    };

    advertise = mkOption {
      type = types.nullOr types.str;
      default = null;
      description = "Address peers and clients reach this node at (null: idserver finds it).";
    };

    peers = mkOption {
      type = types.listOf (types.strMatching ".+:[0-9]+");
      default = [ ];
      example = [ "10.0.0.1:5151" "10.0.0.2:5151" "10.0.0.3:5151" ];
      description = "Every member's HOST:PORT, this node included.";
    };

    multicast = {
      group = mkOption {
        type = types.nullOr (types.strMatching "2(2[4-9]|3[0-9])\\.[0-9.]+:[0-9]+");
        default = null;
        example = "239.255.51.51:5151";
        description = "Multicast GROUP:PORT for discovery and elections (needs interfaceAddress).";
      };
      interfaceAddress = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "Address of the interface to multicast on; nothing is multicast without it.";
      };
    };

    mode = mkOption {
      type = types.enum [ "whitepaper" "strict" ];
      default = "whitepaper";
      description = "whitepaper: acks from minAcks replicas; strict: votes and acks from a majority.";
    };

    clusterSize = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      description = "Strict mode's N (null: the members peers lists).";
    };

    minAcks = mkOption {
      type = types.ints.unsigned;
      default = 1;
      description = "Whitepaper mode: replicas that must have applied a write before success.";
    };

    workerThreads = mkOption {
      type = types.nullOr (types.ints.between 1 1024);
      default = null;
      description = "Threads serving requests (null: one per CPU).";
    };

    appendfsync = mkOption {
      type = types.enum [ "always" "everysec" "no" ];
      default = "everysec";
      description = "fsync policy of the node's own Redis's append-only file.";
    };

    dataDir = mkOption {
      type = types.strMatching "/var/lib/.+";
      default = "/var/lib/idserver";
      description = "Where the node's own Redis keeps its files (under /var/lib: the service's state directory).";
    };

    redis = {
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "unix:///run/redis-idserver/redis.sock";
        description = "An external Redis to use instead of the node's own.";
      };
      package = mkOption {
        type = types.package;
        default = pkgs.redis;
        defaultText = lib.literalExpression "pkgs.redis";
        description = "The Redis whose redis-server the node starts (when url is null).";
      };
    };

    credentials = {
      tlsCert = credentialFile "This node's certificate (PEM), signed by the cluster CA (make with idkeys).";
      tlsKey = credentialFile "Its private key (PEM); keep it out of the Nix store.";
      tlsCa = credentialFile "The cluster CA certificate(s) (PEM).";
      clusterKeyFile = credentialFile "The cluster key file; keep it out of the Nix store.";
      insecurePlaintext = mkOption {
        type = types.bool;
        default = false;
        description = "No TLS, no datagram authentication: anyone who reaches the port is a peer.";
      };
    };

    timings = {
      heartbeatMs = nullOrTiming "The coordinator's heartbeat interval";
      suspectMisses = nullOrTiming "Silent heartbeats before a follower suspects the coordinator";
      deadMisses = nullOrTiming "Silent heartbeats before the coordinator frees a member's rank";
      staggerMs = nullOrTiming "Extra suspicion delay per rank above 1";
      joinWindowMs = nullOrTiming "How long a starting node collects RANK replies";
      electionWindowMs = nullOrTiming "How long a candidate collects RANK replies";
    };

    verbose = mkOption {
      type = types.bool;
      default = false;
      description = "Log every request and storage step.";
    };

    metricsListen = mkOption {
      type = types.nullOr (types.strMatching "[^ ]+:[0-9]+");
      default = null;
      example = "127.0.0.1:9151";
      description = "Serve Prometheus /metrics, /healthz and /readyz over plain HTTP at this address (not opened in the firewall).";
    };

    logFormat = mkOption {
      type = types.enum [ "text" "json" ];
      default = "text";
      description = "Log lines for people (text) or one JSON object per line.";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the port, TCP and UDP, in the firewall.";
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "More idserver flags.";
    };

    commandLine = mkOption {
      type = types.listOf types.str;
      readOnly = true;
      description = "The idserver command line this configuration renders (for tests and review).";
    };
  };

  config = mkIf cfg.enable {
    services.idserver.commandLine = [ "${cfg.package}/bin/idserver" ] ++ args;

    assertions = [
      {
        assertion = (cfg.multicast.group == null) == (cfg.multicast.interfaceAddress == null);
        message = "services.idserver.multicast: group and interfaceAddress go together (nothing is multicast without a named interface)";
      }
      {
        assertion = cfg.credentials.insecurePlaintext
          || lib.all (v: v != null) (with cfg.credentials; [ tlsCert tlsKey tlsCa clusterKeyFile ]);
        message = "services.idserver.credentials: set tlsCert, tlsKey, tlsCa and clusterKeyFile (make them with idkeys), or insecurePlaintext";
      }
      {
        assertion = cfg.peers != [ ] || cfg.multicast.group != null || cfg.clusterSize == null;
        message = "services.idserver.clusterSize needs peers or multicast";
      }
    ];

    networking.firewall = mkIf cfg.openFirewall {
      allowedTCPPorts = [ cfg.port ];
      allowedUDPPorts = [ cfg.port ];
    };

    systemd.services.idserver = {
      description = "idserver (cluster ${cfg.cluster})";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        # The server says READY once it serves, RELOADING/READY around a SIGHUP (credentials
        # and log filter reread), STOPPING, and pings the watchdog (docs/deploy.md).
        Type = "notify";
        NotifyAccess = "main";
        WatchdogSec = "10s";
        ExecStart = lib.escapeShellArgs config.services.idserver.commandLine;
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "1s";
        DynamicUser = true;
        StateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
        StateDirectoryMode = "0700";
        LimitNOFILE = 65536;
        # Hardening: a network daemon with a private unix socket to its own Redis.
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        SystemCallArchitectures = "native";
        CapabilityBoundingSet = "";
        UMask = "0077";
      };
    };
  };
}
