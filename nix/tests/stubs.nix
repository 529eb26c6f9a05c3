# Stand-ins for the NixOS options nix/module.nix sets (assertions, the firewall's ports,
# systemd services), declared as narrowly as honest, for evaluating the module with the
# nixpkgs `lib` alone.
{ lib }:

let
  inherit (lib) mkOption types;
in
{
  options = {
    assertions = mkOption {
      type = types.listOf (types.submodule {
        options.assertion = mkOption { type = types.bool; };
        options.message = mkOption { type = types.str; };
      });
      default = [ ];
    };
    networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    networking.firewall.allowedUDPPorts = mkOption { type = types.listOf types.port; default = [ ]; };
    systemd.services = mkOption {
      type = types.attrsOf (types.submodule {
        options = {
          description = mkOption { type = types.str; };
          wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
          after = mkOption { type = types.listOf types.str; default = [ ]; };
          wants = mkOption { type = types.listOf types.str; default = [ ]; };
          serviceConfig = mkOption {
            type = types.attrsOf (types.oneOf [ types.str types.int types.bool (types.listOf types.str) ]);
            default = { };
          };
        };
      });
      default = { };
    };
  };
}
