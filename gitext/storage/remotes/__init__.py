"""Remotes: where a store's objects are kept away from this machine (base.py: the interface;
local.py, s3.py, ssh.py: the kinds; factory.py: open_remote). Kept empty so that importing the
interface loads none of the kinds."""
