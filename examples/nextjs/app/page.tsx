export default function Home() {
  return (
    <main style={{ fontFamily: "system-ui", maxWidth: 640, margin: "3rem auto" }}>
      <h1>tokenpool on Next.js</h1>
      <p>
        The gateway is mounted at <code>/api</code>: point an OpenAI client at <code>/api/v1</code>,
        manage it under <code>/api/v0/management</code>. Health:{" "}
        <a href="/api/healthz">/api/healthz</a>.
      </p>
    </main>
  );
}
