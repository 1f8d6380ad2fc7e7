"""The built-in mesh CA: roots and their rotation on disk (authority), and the SDS secrets
(identity certificate, trust bundle) it issues to each node (mesh_secrets)."""
