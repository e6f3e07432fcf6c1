package dev.seamline.services;

import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * Runs a real single-node OpenSearch 2.19 server in-process, for Seamline's local tests only.
 *
 * Started by scripts/services.sh. Configuration comes from system properties:
 *   seamline.os.home (required), seamline.os.data, seamline.os.logs,
 *   seamline.os.port (HTTP, default 29200), seamline.os.transport.port (default 29300).
 *
 * Node's constructor is protected, so we subclass it and hand it the modules a distribution would
 * load from modules/ as classpath plugins: Netty4 (HTTP/REST + transport; named Netty4ModulePlugin
 * in 3.x), analysis-common (normalizers, common token filters), mapper-extras (scaled_float,
 * rank_feature, ...) and reindex (_delete_by_query, _update_by_query, _reindex). No security plugin. Bootstrap checks do not run when Node is built
 * directly, and no Java security manager is installed.
 */
public final class SeamlineOpenSearch {

    static final class SeamlineNode extends Node {
        SeamlineNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        String home = required("seamline.os.home");
        String data = System.getProperty("seamline.os.data", Path.of(home, "data").toString());
        String logs = System.getProperty("seamline.os.logs", Path.of(home, "logs").toString());
        String port = System.getProperty("seamline.os.port", "29200");
        String tport = System.getProperty("seamline.os.transport.port", "29300");

        Settings settings = Settings.builder()
            .put("cluster.name", "seamline-test")
            .put("node.name", "seamline-node-1")
            .put("path.home", home)
            .put("path.data", data)
            .put("path.logs", logs)
            .put("network.host", "127.0.0.1")
            .put("http.port", port)
            .put("transport.port", tport)
            .put("discovery.type", "single-node")
            // throwaway test node: never go read-only because the disk is nearly full
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();

        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), Path.of(home, "config"), () -> "seamline-node-1");
        List<Class<? extends Plugin>> plugins =
            List.of(Netty4Plugin.class, CommonAnalysisPlugin.class, MapperExtrasPlugin.class, ReindexPlugin.class);
        Node node = new SeamlineNode(env, plugins);

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "seamline-opensearch-shutdown"));

        node.start();
        System.out.println("seamline-opensearch: node started, http://127.0.0.1:" + port);
        stopped.await();
    }

    private static String required(String key) {
        String v = System.getProperty(key);
        if (v == null || v.isEmpty()) {
            System.err.println("seamline-opensearch: missing -D" + key);
            System.exit(2);
        }
        return v;
    }
}
