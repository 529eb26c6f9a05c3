{
  description = "idlab: a replicated identity server (idserver) and a multi-host fault lab for it (idlab)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      tools = import ./nix/dev-tools.nix;
      build = pkgs: crate: pkgs.callPackage ./nix/package.nix { inherit crate; };
      # The README's two commands, on a host (they need root and namespaces, not a sandbox).
      script = pkgs: name: command: pkgs.writeShellApplication {
        inherit name;
        runtimeInputs = map (t: pkgs.${t}) tools.shell;
        text = ''
          cd "''${IDLAB_SRC:-$PWD}"
          exec ${command} "$@"
        '';
      };
    in
    {
      nixosModules.idserver = { pkgs, ... }: {
        imports = [ ./nix/module.nix ];
        services.idserver.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.idserver;
      };
      nixosModules.default = self.nixosModules.idserver;

      overlays.default = final: _prev: {
        idserver = build final "idserver";
        idlab = build final "harness";
      };

      packages = forAll (pkgs: rec {
        idserver = build pkgs "idserver";
        idlab = build pkgs "harness";
        default = idserver;
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = map (t: pkgs.${t}) tools.shell;
          shellHook = ''
            echo "idlab dev shell: scripts/test, then (as root) scripts/lab"
          '';
        };
      });

      apps = forAll (pkgs: {
        test = { type = "app"; program = lib.getExe (script pkgs "idlab-test" "scripts/test"); };
        lab = { type = "app"; program = lib.getExe (script pkgs "idlab-lab" "scripts/lab"); };
      });

      checks = forAll (pkgs:
        let
          src = import ./nix/source.nix { inherit lib; };
          cargoDeps = pkgs.rustPlatform.importCargoLock { lockFile = ./Cargo.lock; };
          cargoCheck = name: command: pkgs.stdenv.mkDerivation {
            name = "idlab-${name}";
            inherit src cargoDeps;
            nativeBuildInputs = with pkgs; [ cargo rustc clippy rustfmt protobuf rustPlatform.cargoSetupHook ];
            buildPhase = command;
            installPhase = "touch $out";
          };
        in
        {
          # Building runs the unit tests (`--lib`) of each crate.
          idserver = self.packages.${pkgs.stdenv.hostPlatform.system}.idserver;
          idlab = self.packages.${pkgs.stdenv.hostPlatform.system}.idlab;
          clippy = cargoCheck "clippy" "cargo clippy --workspace --all-targets --offline -- -D warnings";
          fmt = cargoCheck "fmt" "cargo fmt --all -- --check";
          module-eval = pkgs.runCommand "idlab-module-eval" { } ''
            export NIX_STATE_DIR=$TMPDIR/nix-state
            result=$(${pkgs.nix}/bin/nix-instantiate --readonly-mode --eval --strict \
              ${./nix}/tests/module-eval.nix --arg lib 'import ${nixpkgs}/lib' 2>&1) \
              || { echo "$result"; exit 1; }
            [ "$result" = "[ ]" ] || { echo "failing: $result"; exit 1; }
            touch $out
          '';
          vm-test = import ./nix/vm-test.nix {
            inherit pkgs;
            module = ./nix/module.nix;
            idserver = self.packages.${pkgs.stdenv.hostPlatform.system}.idserver;
          };
        });
    };
}
