package dev.seamline.services;

import java.io.FileInputStream;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringSerializer;

import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;

/**
 * Streams a Postgres cluster into Kafka with Debezium's embedded engine, for Seamline's local tests
 * and demo only. Started by scripts/services.sh (and by tests, each with its own slot and topics).
 *
 * Usage: SeamlineDebezium ENGINE.properties
 *   Every property is handed to the engine (connector.class, database.*, slot.name, plugin.name,
 *   offset.storage.*, ...), except:
 *     seamline.kafka.bootstrap   the broker to publish to (required)
 *     seamline.topic.partitions  partitions of the topics it creates (default 1)
 *
 * A change event is published with its key and value as Debezium's JSON converter writes them (no
 * schema wrapper when the converters say schemas.enable=false) to the topic the event names
 * (topic.prefix.schema.table), creating the topic on first use (the broker does not auto-create).
 * A batch's offsets are committed only after the broker acknowledged every event of it, so a crash
 * replays events (at least once), never skips them.
 */
public final class SeamlineDebezium {

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: SeamlineDebezium ENGINE.properties");
            System.exit(2);
        }
        Properties props = new Properties();
        try (InputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        String bootstrap = (String) props.remove("seamline.kafka.bootstrap");
        int partitions = Integer.parseInt((String) props.getOrDefault("seamline.topic.partitions", "1"));
        props.remove("seamline.topic.partitions");
        if (bootstrap == null || bootstrap.isEmpty()) {
            System.err.println("seamline-debezium: missing seamline.kafka.bootstrap");
            System.exit(2);
        }

        Properties producerProps = new Properties();
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
        producerProps.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        producerProps.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps);
        Properties adminProps = new Properties();
        adminProps.put("bootstrap.servers", bootstrap);
        Admin admin = Admin.create(adminProps);
        Set<String> topics = new HashSet<>(admin.listTopics().names().get(30, TimeUnit.SECONDS));

        CountDownLatch finished = new CountDownLatch(1);
        int[] exitCode = {0};
        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine.create(Json.class)
            .using(props)
            .notifying((records, committer) -> {
                List<Future<RecordMetadata>> sent = new ArrayList<>(records.size());
                for (ChangeEvent<String, String> r : records) {
                    String topic = r.destination();
                    if (!topics.contains(topic)) {
                        try {
                            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(30, TimeUnit.SECONDS);
                        } catch (java.util.concurrent.ExecutionException e) {
                            if (!(e.getCause() instanceof TopicExistsException)) {
                                throw new RuntimeException(e);
                            }
                        } catch (Exception e) {
                            throw new RuntimeException(e);
                        }
                        topics.add(topic);
                    }
                    sent.add(producer.send(new ProducerRecord<>(topic, r.key(), r.value())));
                }
                producer.flush();
                for (Future<RecordMetadata> f : sent) {
                    try {
                        f.get();
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                }
                for (ChangeEvent<String, String> r : records) {
                    committer.markProcessed(r);
                }
                committer.markBatchFinished();
                System.out.println("seamline-debezium: published " + records.size() + " events");
            })
            .using((success, message, error) -> {
                if (!success) {
                    System.err.println("seamline-debezium: engine stopped: " + message);
                    if (error != null) {
                        error.printStackTrace();
                    }
                    exitCode[0] = 1;
                }
                finished.countDown();
            })
            .build();

        ExecutorService executor = Executors.newSingleThreadExecutor();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                engine.close();
                finished.await(30, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                producer.close();
                admin.close();
            }
        }, "seamline-debezium-shutdown"));
        executor.execute(engine);
        System.out.println("seamline-debezium: engine started, publishing to " + bootstrap);
        finished.await();
        executor.shutdown();
        if (exitCode[0] != 0) {
            producer.close();
            admin.close();
            Runtime.getRuntime().halt(exitCode[0]);
        }
    }
}
