# What can be checked of the flake without a package set (Nix 2.8, no network): its outputs'
# shape for every system, the NixOS module it exports (evaluated with the stand-in options of
# module-eval.nix), the lock (a pinned nixpkgs release Nix accepts: a full revision and a
# narHash), and that the dev shell holds a tool for every package scripts/install-deps
# installs. Evaluates to the list of failures.
#
#   nix-instantiate --eval --strict nix/tests/flake-eval.nix --arg lib 'import LIB/lib'
{ lib }:

let
  root = ../..;
  flake = import (root + "/flake.nix");
  systems = [ "x86_64-linux" "aarch64-linux" ];
  fakePackage = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  nixpkgs = {
    inherit lib;
    legacyPackages = lib.genAttrs systems (_: throw "no package set in this evaluation");
  };
  outputs = flake.outputs { self = outputs // { packages = lib.genAttrs systems (_: { idserver = fakePackage "idserver"; }); }; inherit nixpkgs; };

  exported = module: (lib.evalModules {
    modules = [
      module
      (import ./stubs.nix { inherit lib; })
      {
        _module.args.pkgs = { redis = fakePackage "redis"; coreutils = fakePackage "coreutils"; stdenv.hostPlatform.system = "x86_64-linux"; };
        services.idserver = { enable = true; credentials.insecurePlaintext = true; peers = [ "10.0.0.1:5151" ]; };
      }
    ];
  }).config;

  lock = builtins.fromJSON (builtins.readFile (root + "/flake.lock"));
  locked = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs}.locked;
  original = lock.nodes.${lock.nodes.${lock.root}.inputs.nixpkgs}.original;
  url = flake.inputs.nixpkgs.url;

  tools = import ../dev-tools.nix;
  installDeps = builtins.readFile (root + "/scripts/install-deps");
  aptPackages = lib.unique (lib.concatMap (m: if builtins.isList m then m else [ ])
    (builtins.split "need\\+=\\(([a-z0-9.+-]+)\\)" installDeps));

  check = name: ok: lib.optional (!ok) name;
in
check "every output is there for every system" (lib.all (o: builtins.attrNames outputs.${o} == lib.sort (a: b: a < b) systems)
  [ "packages" "devShells" "apps" "checks" ])
++ check "packages: idserver, idlab, default" (lib.all (s: builtins.attrNames outputs.packages.${s} == [ "default" "idlab" "idserver" ]) systems)
++ check "apps: lab and test" (lib.all (s: builtins.attrNames outputs.apps.${s} == [ "lab" "test" ]) systems)
++ check "checks: build, clippy, fmt, module evaluation, the VM test" (lib.all
  (s: builtins.attrNames outputs.checks.${s} == [ "clippy" "fmt" "idlab" "idserver" "module-eval" "vm-test" ]) systems)
++ check "the exported modules (idserver, default) render a service with the flake's package" (lib.all
  (m: lib.hasPrefix "/nix/store/00000000000000000000000000000000-idserver/bin/idserver --numport 5151"
    (exported m).systemd.services.idserver.serviceConfig.ExecStart)
  [ outputs.nixosModules.idserver outputs.nixosModules.default ])
++ check "the lock: version 7, nixpkgs from GitHub at a full revision with its narHash" (
  lock.version == 7 && locked.type == "github" && locked.owner == "NixOS" && locked.repo == "nixpkgs"
  && builtins.match "[0-9a-f]{40}" locked.rev != null
  && builtins.match "sha256-[A-Za-z0-9+/]{43}=" locked.narHash != null
  && builtins.isInt locked.lastModified)
++ check "the lock pins the branch flake.nix names" (url == "github:${original.owner}/${original.repo}/${original.ref}")
++ check "install-deps names packages (the pattern still finds them)" (lib.length aptPackages >= 5)
++ map (p: "install-deps installs ${p}: nix/dev-tools.nix maps it to no tool of the dev shell")
  (lib.filter (p: !(tools.debian ? ${p}) || !(lib.elem tools.debian.${p} tools.shell)) aptPackages)
++ map (p: "nix/dev-tools.nix maps ${p}, which install-deps no longer installs")
  (lib.filter (p: !(lib.elem p aptPackages)) (builtins.attrNames tools.debian))
