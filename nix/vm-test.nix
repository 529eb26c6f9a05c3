# The lab past one machine, on NixOS's multi-VM test engine: three server VMs and a client VM
# on one VLAN, every node with its own Redis, discovery and elections by real multicast on
# eth1, real `tc netem` latency on the servers' interfaces, credentials made by idkeys. It
# crashes the coordinator's VM, checks that the survivors agree on a new one and hold every
# acknowledged write, then shows rank reuse when a fresh node takes the dead one's place.
#
#   nix build .#checks.x86_64-linux.vm-test   (needs KVM)
{ pkgs, module, idserver }:

let
  # The test driver numbers nodes alphabetically (client 1, s1 2, …) and gives each
  # 192.168.1.<number> on the VLAN's eth1.
  addr = n: "192.168.1.${toString (n + 1)}";
  keys = pkgs.runCommand "idlab-vm-test-keys" { } ''
    ${idserver}/bin/idkeys --dir $out --cluster vmtest \
      --node s1=${addr 1} --node s2=${addr 2} --node s3=${addr 3} --node s4=${addr 4}
  '';
  server = n: { ... }: {
    imports = [ module ];
    virtualisation.vlans = [ 1 ];
    networking.firewall.enable = false;
    environment.systemPackages = [ idserver pkgs.iproute2 ];
    services.idserver = {
      enable = true;
      package = idserver;
      cluster = "vmtest";
      multicast = { group = "239.255.51.51:5151"; interfaceAddress = addr n; };
      clusterSize = 3;
      credentials = {
        tlsCert = "${keys}/s${toString n}.pem";
        tlsKey = "${keys}/s${toString n}-key.pem";
        tlsCa = "${keys}/ca.pem";
        clusterKeyFile = "${keys}/cluster.key";
      };
    };
  };
in
pkgs.testers.nixosTest {
  name = "idlab-three-nodes";
  nodes = {
    s1 = server 1;
    s2 = server 2;
    s3 = server 3;
    s4 = { lib, ... }: {
      imports = [ (server 4) ];
      # The fresh node, started by the test once a member is dead.
      systemd.services.idserver.wantedBy = lib.mkForce [ ];
    };
    client = { ... }: {
      virtualisation.vlans = [ 1 ];
      networking.firewall.enable = false;
      environment.systemPackages = [ idserver pkgs.jq ];
    };
  };
  testScript = ''
    import json

    servers = [s1, s2, s3]
    ca = "--tls-ca ${keys}/ca.pem"
    mcast = "--mcast 239.255.51.51:5151 --mcast-if 192.168.1.1 --cluster vmtest"

    def address(n):
        return f"192.168.1.{n + 1}"

    def status(machine, n):
        out = machine.succeed(f"idclient {ca} --cluster vmtest -s {address(n)} --json --status")
        return json.loads(out)["status"]

    start_all()
    for m in servers:
        m.wait_for_unit("idserver.service")
        # Real latency on the wire: 5 ms each way on every server's link.
        m.succeed("tc qdisc add dev eth1 root netem delay 5ms 1ms")

    def agreed(live):
        views = [status(client, n) for n in live]
        coords = {v["coordinator_addr"] for v in views}
        return views if len(coords) == 1 and None not in coords else None

    with subtest("three nodes elect one coordinator by multicast"):
        client.wait_until_succeeds(f"idclient {ca} {mcast} --status", timeout=60)
        retry(lambda _: agreed([1, 2, 3]) is not None, timeout=60)

    with subtest("acknowledged writes survive the coordinator's death"):
        for i in range(20):
            client.succeed(f"idclient {ca} {mcast} --create user{i} 'User {i}'")
        coordinator = agreed([1, 2, 3])[0]["coordinator_addr"].split(":")[0]
        dead = int(coordinator.rsplit(".", 1)[1]) - 1
        servers[dead - 1].crash()  # the whole VM, as a power cut
        live = [n for n in (1, 2, 3) if n != dead]
        retry(lambda _: agreed(live) is not None and agreed(live)[0]["coordinator_addr"] != coordinator + ":5151", timeout=60)
        for n in live:
            users = json.loads(client.succeed(f"idclient {ca} --cluster vmtest -s {address(n)} --json --get users"))["users"]
            assert all(f"user{i}" in users for i in range(20)), (n, users)

    with subtest("a fresh node takes the free rank"):
        ranks = {status(client, n)["rank"] for n in live}
        free = ({1, 2, 3} - ranks).pop()
        s4.succeed("systemctl start idserver.service")
        retry(lambda _: status(client, 4)["rank"] == free, timeout=60)
  '';
}
