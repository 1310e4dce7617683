"""Modules generated from proto/marchproxy/module_service.proto when the package is built
(see hatch_build.py); not committed, never edited by hand."""
