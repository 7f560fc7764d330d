// new Socket(); bind(127.0.0.1:0); connect: N times over three echo servers, one line echoed each.
import java.io.*;
import java.net.*;
import java.util.*;

public class Client {
    public static void main(String[] a) throws Exception {
        int n = Integer.parseInt(a[0]);
        double hold = Double.parseDouble(a[1]);
        List<Socket> socks = new ArrayList<>();
        Map<String, Integer> errs = new TreeMap<>();
        for (int i = 0; i < n; i++) {
            Socket s = new Socket();
            try {
                s.bind(new InetSocketAddress("127.0.0.1", 0));
                s.connect(new InetSocketAddress("127.0.0." + (2 + i % 3), 7), 5000);
                s.getOutputStream().write("ping\n".getBytes());
                byte[] b = new byte[16];
                int k = s.getInputStream().read(b);
                if (k == 5 && new String(b, 0, 5).equals("ping\n")) socks.add(s);
            } catch (IOException e) {
                errs.merge(e.getClass().getSimpleName() + ": " + e.getMessage(), 1, Integer::sum);
                s.close();
            }
        }
        Thread.sleep((long) (hold * 1000));
        System.out.println("result ok=" + socks.size() + " fail=" + (n - socks.size()));
        StringBuilder sb = new StringBuilder();
        errs.forEach((e, c) -> sb.append(c).append(' ').append(e).append(' '));
        System.out.println("errors " + (sb.length() == 0 ? "none" : sb.toString().trim()));
    }
}
