"""The plugin's entry point, as Dify's plugin daemon runs it: ``python -m main`` in the plugin directory."""

from dify_plugin import DifyPluginEnv, Plugin

plugin = Plugin(DifyPluginEnv(MAX_REQUEST_TIMEOUT=120))

if __name__ == "__main__":
    plugin.run()
