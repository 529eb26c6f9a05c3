# The workspace's sources as the builds see them (nothing else of the repository).
{ lib }:

lib.fileset.toSource {
  root = ../.;
  fileset = lib.fileset.unions [
    ../Cargo.toml
    ../Cargo.lock
    ../server
    ../netns
    ../harness
    ../scenarios
  ];
}
