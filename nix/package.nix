# The workspace built from Cargo.lock: `idserver` (idserver, idclient, idkeys) or `idlab`.
# Inside the build sandbox only the unit tests run (`--lib`): the integration tests start
# redis-server and real clusters with timing bounds, and the lab needs root and network
# namespaces; they run in `.ci/run` and `nix run .#test` / `.#lab` on a real host instead.
{ lib, rustPlatform, pkg-config, protobuf, crate ? "idserver" }:

rustPlatform.buildRustPackage {
  pname = if crate == "harness" then "idlab" else crate;
  version = "0.1.0";
  src = import ./source.nix { inherit lib; };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "-p" crate ];
  cargoTestFlags = [ "-p" crate "--lib" ];
  # protoc (with its well-known protos) builds etcd's gRPC client, which idlab's bench uses.
  nativeBuildInputs = [ pkg-config ] ++ lib.optional (crate == "harness") protobuf;
  meta = {
    description = "Replicated identity server (login name <-> UUID) and its fault lab";
    license = with lib.licenses; [ mit asl20 ];
    mainProgram = if crate == "harness" then "idlab" else "idserver";
    platforms = lib.platforms.linux;
  };
}
