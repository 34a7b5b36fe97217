import java.lang.reflect.Field;

/**
 * Starts AWS's DynamoDB Local bound to one host (127.0.0.1 by default) on an ephemeral port.
 *
 * DynamoDB Local has no option to choose the interface it listens on (Jetty binds every
 * interface), so this launcher builds the server with DynamoDB Local's own command-line
 * parser, sets the host and port of its Jetty connectors before starting it, prints
 * "LOCAL_DYNAMODB_LISTENING <host> <port>", and stops when its standard input closes (so it
 * never outlives the Node.js process that started it). Reflection only: it compiles
 * without DynamoDB Local on the compile-time class path (java's single-file source mode).
 *
 * Usage: java -Djava.library.path=<lib>/DynamoDBLocal_lib -cp <lib>/DynamoDBLocal.jar \
 *          LocalDynamoDB.java -inMemory -disableTelemetry -port 8000
 * (-port must pass DynamoDB Local's validation; the connector is then moved to port 0.)
 */
public class LocalDynamoDB {
  public static void main(String[] args) throws Exception {
    String host = System.getProperty("localdynamodb.host", "127.0.0.1");
    Class<?> runner = Class.forName("software.amazon.dynamodb.services.local.main.ServerRunner");
    Object proxy = runner.getMethod("createServerFromCommandLineArgs", String[].class).invoke(null, (Object) args);
    Field field = proxy.getClass().getDeclaredField("server");
    field.setAccessible(true);
    Object server = field.get(proxy);
    Object[] connectors = (Object[]) server.getClass().getMethod("getConnectors").invoke(server);
    if (connectors.length == 0) throw new IllegalStateException("DynamoDB Local has no connector");
    for (Object connector : connectors) {
      connector.getClass().getMethod("setHost", String.class).invoke(connector, host);
      connector.getClass().getMethod("setPort", int.class).invoke(connector, 0);
    }
    proxy.getClass().getMethod("start").invoke(proxy);
    for (Object connector : connectors) {
      Object port = connector.getClass().getMethod("getLocalPort").invoke(connector);
      System.out.println("LOCAL_DYNAMODB_LISTENING " + host + " " + port);
    }
    System.out.flush();
    while (System.in.read() != -1) {
      // Wait for the parent to close our standard input.
    }
    try {
      proxy.getClass().getMethod("stop").invoke(proxy);
    } finally {
      System.exit(0);
    }
  }
}
