"""The OCI runtime interface: minicontainer-runc speaks runc's command line (oci/cli.py)
over the same library; oci/config.py turns a bundle's config.json into our ContainerSpec."""
