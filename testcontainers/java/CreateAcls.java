// Creates ACLs on a Kafka cluster in one Admin API call: the local secured cluster's grants,
// rendered from the access the roles declare (crates/platform/src/access.rs). Run with the
// Kafka jars on the class path: java -cp 'libs/*' CreateAcls.java CLIENT.properties GRANTS.tsv
// GRANTS.tsv: one ACL per line, tab-separated: principal, resource type (TOPIC, GROUP,
// TRANSACTIONAL_ID, CLUSTER), name, pattern (LITERAL, PREFIXED), operation (READ, WRITE, ...).

import java.io.FileInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class CreateAcls {
    public static void main(String[] args) throws Exception {
        Properties client = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            client.load(in);
        }
        List<AclBinding> bindings = new ArrayList<>();
        for (String line : Files.readAllLines(Path.of(args[1]))) {
            if (line.isBlank()) {
                continue;
            }
            String[] f = line.split("\t", -1);
            ResourcePattern resource = new ResourcePattern(
                ResourceType.valueOf(f[1]), f[2], PatternType.valueOf(f[3]));
            AccessControlEntry entry = new AccessControlEntry(
                f[0], "*", AclOperation.valueOf(f[4]), AclPermissionType.ALLOW);
            bindings.add(new AclBinding(resource, entry));
        }
        try (Admin admin = Admin.create(client)) {
            admin.createAcls(bindings).all().get();
        }
        System.out.println("created " + bindings.size() + " ACLs");
    }
}
