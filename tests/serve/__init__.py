"""Tests of vaekit serve: a package, so that its conftest and modules do not shadow the suite's
(``conftest``, ``test_errors``)."""
