"""Packaging for camera-service.

twisted/plugins has no __init__.py (Twisted requires that), so it is listed by hand;
after installation the plugin cache is regenerated so that ``twistd camera-service``
works even where site-packages is read-only at run time.
"""

from setuptools import find_packages, setup
from setuptools.command.develop import develop
from setuptools.command.install import install


def _regenerate_plugin_cache() -> None:
    try:
        from twisted.plugin import IPlugin, getPlugins

        list(getPlugins(IPlugin))
    except Exception as exc:  # packaging must not fail on a cache write
        import sys

        sys.stderr.write(f"warning: could not regenerate Twisted plugin cache: {exc}\n")


class _Install(install):
    def run(self) -> None:
        super().run()
        self.execute(_regenerate_plugin_cache, (), msg="Regenerating Twisted plugin cache")


class _Develop(develop):
    def run(self) -> None:
        super().run()
        self.execute(_regenerate_plugin_cache, (), msg="Regenerating Twisted plugin cache")


setup(
    name="camera-service",
    version="1.0.0",
    description="USB camera node: discovery, MediaMTX publishing, recording and a JSON-RPC API",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["camera_service", "camera_service.*"]) + ["twisted.plugins"],
    package_data={"twisted": ["plugins/camera_service_plugin.py"], "camera_service": ["py.typed"]},
    include_package_data=True,
    install_requires=[
        "twisted[tls]>=24.7",
        # Pinned: autobahn releases 25.9.1 and several 25.10-25.12 broke downstream
        # projects; 24.4.2 is the version this service is tested with.
        "autobahn==24.4.2",
        "treq>=24.9",
        "pyudev>=0.24",
        "PyJWT>=2.8",
        "bcrypt>=4.1",
        "service-identity>=24.1",
        "pyyaml>=6.0",
        # psutil gives process/host CPU, memory and thread counts without parsing /proc.
        "psutil>=5.9",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-twisted>=1.14", "pytest-timeout>=2.3", "jsonschema>=4.18"],
    },
    entry_points={
        "console_scripts": [
            "camera-service-admin = camera_service.admin:main",
            "camera-service-cli = camera_service.client:main",
        ],
    },
    cmdclass={"install": _Install, "develop": _Develop},
)
