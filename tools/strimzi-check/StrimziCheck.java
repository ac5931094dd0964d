// Checks Strimzi custom resources against Strimzi's own model, the io.strimzi:api classes the
// operator itself deserializes them into. Run by tools/validate-manifests:
//
//   java --class-path "$(cat classpath)" tools/strimzi-check/StrimziCheck.java FILE...
//
// Every document of every file whose apiVersion is in a *.strimzi.io group is read into its
// model class. A document fails when Jackson cannot read it (a wrong type, an unknown enum value
// such as a listener type), when a field is unknown to the model (Strimzi keeps unknown fields
// in additionalProperties rather than failing, which is how a misspelt field would slip through
// to the cluster), when a required field is missing, or when its apiVersion is not the one
// scanstream targets. Other documents are left to the Kubernetes schema check. Exit status: 0
// when every Strimzi document is valid, 1 otherwise, 2 on unreadable input.

import com.fasterxml.jackson.databind.JavaType;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.introspect.AnnotatedMember;
import com.fasterxml.jackson.databind.introspect.BeanPropertyDefinition;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.strimzi.api.kafka.model.common.UnknownPropertyPreserving;
import io.strimzi.api.kafka.model.kafka.Kafka;
import io.strimzi.api.kafka.model.nodepool.KafkaNodePool;
import io.strimzi.api.kafka.model.rebalance.KafkaRebalance;
import io.strimzi.api.kafka.model.topic.KafkaTopic;
import io.strimzi.api.kafka.model.user.KafkaUser;
import java.io.File;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.Collection;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

public final class StrimziCheck {
    static final String API_VERSION = "kafka.strimzi.io/v1";
    static final Map<String, Class<?>> KINDS = Map.of(
            "Kafka", Kafka.class,
            "KafkaNodePool", KafkaNodePool.class,
            "KafkaTopic", KafkaTopic.class,
            "KafkaUser", KafkaUser.class,
            "KafkaRebalance", KafkaRebalance.class);

    private final ObjectMapper mapper = new ObjectMapper(new YAMLFactory());
    private final List<String> errors = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            System.err.println("usage: StrimziCheck FILE...");
            System.exit(2);
        }
        StrimziCheck check = new StrimziCheck();
        int checked = 0;
        for (String name : args) {
            List<JsonNode> docs;
            try (var parser = check.mapper.getFactory().createParser(new File(name))) {
                docs = check.mapper.readValues(parser, JsonNode.class).readAll();
            } catch (Exception e) {
                System.err.println(name + ": not YAML: " + e.getMessage());
                System.exit(2);
                return;
            }
            for (JsonNode doc : docs) {
                if (doc == null || doc.isNull() || doc.isMissingNode()) {
                    continue;
                }
                String apiVersion = doc.path("apiVersion").asText("");
                if (apiVersion.contains("strimzi.io/")) {
                    check.document(name, doc);
                    checked++;
                }
            }
        }
        for (String error : check.errors) {
            System.out.println(error);
        }
        System.out.printf("strimzi model %s: %d resources checked, %d problems%n",
                KafkaTopic.class.getPackage().getImplementationVersion() == null
                        ? "(io.strimzi:api)" : KafkaTopic.class.getPackage().getImplementationVersion(),
                checked, check.errors.size());
        System.exit(check.errors.isEmpty() ? 0 : 1);
    }

    private void document(String file, JsonNode doc) {
        String kind = doc.path("kind").asText("");
        String where = file + ": " + kind + "/" + doc.path("metadata").path("name").asText("?");
        String apiVersion = doc.path("apiVersion").asText("");
        if (!API_VERSION.equals(apiVersion)) {
            errors.add(where + ": apiVersion " + apiVersion + ", expected " + API_VERSION);
            return;
        }
        Class<?> type = KINDS.get(kind);
        if (type == null) {
            errors.add(where + ": kind " + kind + " is not one scanstream deploys " + KINDS.keySet());
            return;
        }
        Object model;
        try {
            model = mapper.treeToValue(doc, type);
        } catch (Exception e) {
            String message = e.getMessage() == null ? e.toString() : e.getMessage().lines().findFirst().orElse("");
            errors.add(where + ": does not fit the model: " + message);
            return;
        }
        walk(where, "", model, new IdentityHashMap<>());
    }

    /** Reports unknown and missing required fields anywhere under {@code value}. */
    private void walk(String where, String path, Object value, IdentityHashMap<Object, Boolean> seen) {
        if (value == null || seen.put(value, Boolean.TRUE) != null) {
            return;
        }
        if (value instanceof Collection<?> items) {
            int i = 0;
            for (Object item : items) {
                walk(where, path + "[" + i++ + "]", item, seen);
            }
            return;
        }
        if (value instanceof Map<?, ?> entries) {
            for (Map.Entry<?, ?> entry : entries.entrySet()) {
                walk(where, path + "." + entry.getKey(), entry.getValue(), seen);
            }
            return;
        }
        String pkg = value.getClass().getPackageName();
        if (!pkg.startsWith("io.strimzi.") && !pkg.startsWith("io.fabric8.")) {
            return;
        }
        Map<String, Object> unknown = unknownFields(value);
        for (String field : unknown.keySet()) {
            errors.add(where + ": " + join(path, field) + ": unknown field (not in "
                    + value.getClass().getSimpleName() + ")");
        }
        JavaType type = mapper.constructType(value.getClass());
        for (BeanPropertyDefinition property :
                mapper.getSerializationConfig().introspect(type).findProperties()) {
            AnnotatedMember getter = property.getAccessor();
            if (getter == null) {
                continue;
            }
            Object child;
            try {
                child = getter.getValue(value);
            } catch (Exception e) {
                continue;
            }
            String childPath = join(path, property.getName());
            if (child == null && property.isRequired() && !childPath.startsWith("status")) {
                errors.add(where + ": " + childPath + ": required field is missing");
            }
            walk(where, childPath, child, seen);
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> unknownFields(Object value) {
        if (value instanceof UnknownPropertyPreserving preserving) {
            return preserving.getAdditionalProperties() == null ? Map.of() : preserving.getAdditionalProperties();
        }
        try {
            Method method = value.getClass().getMethod("getAdditionalProperties");
            Object result = method.invoke(value);
            return result instanceof Map<?, ?> map ? (Map<String, Object>) map : Map.of();
        } catch (ReflectiveOperationException e) {
            return Map.of();
        }
    }

    private static String join(String path, String field) {
        return path.isEmpty() ? field : path + "." + field;
    }
}
