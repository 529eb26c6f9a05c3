# What the dev shell holds, as nixpkgs attribute names, and which of them stands for each
# Debian package `scripts/install-deps` installs (scripts/check-nix keeps the two in step:
# every package install-deps names must be mapped here, to a tool of the shell).
{
  shell = [
    "cargo" "rustc" "clippy" "rustfmt" "cargo-nextest" "pkg-config"
    "redis" "iproute2" "iptables" "nftables" "procps" "nix"
    "docker-client" "etcd" "openssh" "protobuf" "chromium"
    "coreutils"
  ];
  debian = {
    "redis-server" = "redis";
    "redis-tools" = "redis";
    "iproute2" = "iproute2";
    "iptables" = "iptables";
    "procps" = "procps";
    "nix-bin" = "nix";
    "docker.io" = "docker-client";
    # idlab bench: etcd to compare with, protoc and the well-known protos for etcd's gRPC
    # client, a headless browser for the bench test.
    "etcd-server" = "etcd";
    "protobuf-compiler" = "protobuf";
    "libprotobuf-dev" = "protobuf";
    "chromium" = "chromium";
    # The lab over SSH: the client, and sshd in the lab's namespaces for its test.
    "openssh-client" = "openssh";
    "openssh-server" = "openssh";
    "coreutils" = "coreutils";
  };
}
