def test_quickstart_request_returns_a_b64_png_and_charges_the_token(gateway):
    token = gateway.token("10")
    reply = gateway.generate({"model": "gpt-image-2", "prompt": "A futuristic skyline at dusk", "size": "1024x1024"}, token)
    assert reply.status == 200, reply.raw["body"][:500]
    assert reply.json["data"][0]["b64_json"]
